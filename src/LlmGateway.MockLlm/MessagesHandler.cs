using System.Text.Json;
using static LlmGateway.MockLlm.MockLlmConstants;

namespace LlmGateway.MockLlm;

// POST /v1/messages: Anthropic's message object, or its stream of named events (message_start, content_block_*,
// message_delta, message_stop). Usage as Anthropic reports it: input_tokens excludes the cache reads and writes
// (X-Mock-Usage-Cache-Read / -Cache-Write); a stream's message_delta carries the cumulative output_tokens only.
internal sealed class MessagesHandler(MockRequestLog log) : MockHandler(log)
{
    private const string IdPrefix = "msg_";

    protected override async Task RespondAsync(MockCall call)
    {
        var prompt = new MockPrompt(call.Model);
        var system = call.Root.GetPropertyOrDefault("system");
        if (system.ValueKind != JsonValueKind.Undefined)
        {
            prompt.AddMessage("system");
            prompt.AppendContent(system);
        }

        string? lastUserText = null;
        var lastIsToolResult = false;
        var messages = call.Root.GetPropertyOrDefault("messages");
        if (messages.ValueKind == JsonValueKind.Array)
        {
            foreach (var message in messages.EnumerateArray())
            {
                var role = message.GetString("role");
                prompt.AddMessage(role);
                var content = message.GetPropertyOrDefault("content");
                var text = prompt.AppendContent(content);
                if (role == "user")
                {
                    lastUserText = text;
                    lastIsToolResult = AppendToolResults(prompt, content, ref lastUserText);
                }
            }
        }

        // X-Mock-Tool-Call answers a user turn that offers tools (and is not itself a tool result) with a tool_use block.
        string? toolName = null;
        MockReply reply;
        var tools = call.Root.GetPropertyOrDefault("tools");
        if (call.Headers[ToolCall].ToString() is { Length: > 0 } name
            && tools.ValueKind == JsonValueKind.Array && tools.GetArrayLength() > 0 && !lastIsToolResult)
        {
            toolName = name;
            var arguments = call.Headers[ToolArguments].ToString() is { Length: > 0 } json ? json : "{}";
            reply = MockReply.Create(call.Headers, call.Model, prompt, arguments, MockReply.CountWords(arguments));
        }
        else
        {
            reply = MockReply.Create(call.Headers, call.Model, prompt, lastUserText, call.Root.GetInt32("max_tokens"));
        }

        var cacheRead = MockUsage.Override(call.Headers, UsageCacheRead) ?? 0;
        var cacheWrite = MockUsage.Override(call.Headers, UsageCacheWrite) ?? 0;
        var stopReason = toolName is not null ? "tool_use" : reply.Truncated ? "max_tokens" : "end_turn";
        if (call.Stream)
        {
            await StreamAsync(call, reply, toolName, stopReason, cacheRead, cacheWrite);
        }
        else
        {
            await WriteMessageAsync(call, reply, toolName, stopReason, cacheRead, cacheWrite);
        }
    }

    // Tool results are prompt text too; true when the turn carries one (the model is to answer it, not call again).
    private static bool AppendToolResults(MockPrompt prompt, JsonElement content, ref string? lastUserText)
    {
        if (content.ValueKind != JsonValueKind.Array)
        {
            return false;
        }

        var found = false;
        foreach (var block in content.EnumerateArray())
        {
            if (block.GetString("type") == "tool_result")
            {
                found = true;
                var text = prompt.AppendContent(block.GetPropertyOrDefault("content"));
                lastUserText = string.IsNullOrEmpty(lastUserText) ? text : lastUserText + " " + text;
            }
        }

        return found;
    }

    private static async Task WriteMessageAsync(MockCall call, MockReply reply, string? toolName, string stopReason, int cacheRead, int cacheWrite)
    {
        using var buffer = new PooledBufferWriter();
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("id", reply.Id(IdPrefix));
            writer.WriteString("type", "message");
            writer.WriteString("role", "assistant");
            writer.WriteString("model", call.Model);
            writer.WriteStartArray("content");
            if (toolName is null)
            {
                writer.WriteStartObject();
                writer.WriteString("type", "text");
                writer.WriteString("text", reply.Text);
                writer.WriteEndObject();
            }
            else
            {
                WriteToolUse(writer, reply, toolName, withInput: true);
            }

            writer.WriteEndArray();
            writer.WriteString("stop_reason", stopReason);
            writer.WriteNull("stop_sequence");
            WriteUsage(writer, reply, cacheRead, cacheWrite, reply.Usage.CompletionTokens);
            writer.WriteEndObject();
        }

        await MockJson.SendAsync(call.Context, StatusCodes.Status200OK, buffer);
    }

    private static async Task StreamAsync(MockCall call, MockReply reply, string? toolName, string stopReason, int cacheRead, int cacheWrite)
    {
        using var stream = new MockEventStream(call);

        var writer = stream.BeginEvent("message_start");
        writer.WriteStartObject();
        writer.WriteString("type", "message_start");
        writer.WriteStartObject("message");
        writer.WriteString("id", reply.Id(IdPrefix));
        writer.WriteString("type", "message");
        writer.WriteString("role", "assistant");
        writer.WriteString("model", call.Model);
        writer.WriteStartArray("content");
        writer.WriteEndArray();
        writer.WriteNull("stop_reason");
        writer.WriteNull("stop_sequence");
        WriteUsage(writer, reply, cacheRead, cacheWrite, Math.Min(1, reply.Usage.CompletionTokens));
        writer.WriteEndObject();
        writer.WriteEndObject();
        await stream.SendEventAsync();

        writer = stream.BeginEvent("content_block_start");
        writer.WriteStartObject();
        writer.WriteString("type", "content_block_start");
        writer.WriteNumber("index", 0);
        writer.WritePropertyName("content_block");
        if (toolName is null)
        {
            writer.WriteStartObject();
            writer.WriteString("type", "text");
            writer.WriteString("text", string.Empty);
            writer.WriteEndObject();
        }
        else
        {
            WriteToolUse(writer, reply, toolName, withInput: false);
        }

        writer.WriteEndObject();
        await stream.SendEventAsync();

        writer = stream.BeginEvent("ping");
        writer.WriteStartObject();
        writer.WriteString("type", "ping");
        writer.WriteEndObject();
        await stream.SendEventAsync();

        var text = reply.Text;
        for (int start = 0, end; start < text.Length; start = end)
        {
            end = toolName is null ? MockReply.NextChunkEnd(text, start) : text.Length;
            writer = stream.BeginEvent("content_block_delta");
            writer.WriteStartObject();
            writer.WriteString("type", "content_block_delta");
            writer.WriteNumber("index", 0);
            writer.WriteStartObject("delta");
            writer.WriteString("type", toolName is null ? "text_delta" : "input_json_delta");
            writer.WriteString(toolName is null ? "text" : "partial_json", text.AsSpan(start, end - start));
            writer.WriteEndObject();
            writer.WriteEndObject();
            if (!await stream.SendContentEventAsync())
            {
                return;
            }
        }

        if (!await stream.EndContentAsync())
        {
            return;
        }

        writer = stream.BeginEvent("content_block_stop");
        writer.WriteStartObject();
        writer.WriteString("type", "content_block_stop");
        writer.WriteNumber("index", 0);
        writer.WriteEndObject();
        await stream.SendEventAsync();

        writer = stream.BeginEvent("message_delta");
        writer.WriteStartObject();
        writer.WriteString("type", "message_delta");
        writer.WriteStartObject("delta");
        writer.WriteString("stop_reason", stopReason);
        writer.WriteNull("stop_sequence");
        writer.WriteEndObject();
        writer.WriteStartObject("usage");
        writer.WriteNumber("output_tokens", reply.Usage.CompletionTokens);
        writer.WriteEndObject();
        writer.WriteEndObject();
        await stream.SendEventAsync();

        writer = stream.BeginEvent("message_stop");
        writer.WriteStartObject();
        writer.WriteString("type", "message_stop");
        writer.WriteEndObject();
        await stream.SendEventAsync();
    }

    private static void WriteToolUse(Utf8JsonWriter writer, MockReply reply, string toolName, bool withInput)
    {
        writer.WriteStartObject();
        writer.WriteString("type", "tool_use");
        writer.WriteString("id", reply.Id("toolu_", 1));
        writer.WriteString("name", toolName);
        writer.WritePropertyName("input");
        if (withInput)
        {
            try
            {
                using var input = JsonDocument.Parse(reply.Text);
                input.RootElement.WriteTo(writer);
            }
            catch (JsonException)
            {
                writer.WriteStartObject();
                writer.WriteEndObject();
            }
        }
        else
        {
            writer.WriteStartObject();
            writer.WriteEndObject();
        }

        writer.WriteEndObject();
    }

    private static void WriteUsage(Utf8JsonWriter writer, MockReply reply, int cacheRead, int cacheWrite, int outputTokens)
    {
        writer.WriteStartObject("usage");
        writer.WriteNumber("input_tokens", reply.Usage.PromptTokens);
        writer.WriteNumber("cache_creation_input_tokens", cacheWrite);
        writer.WriteNumber("cache_read_input_tokens", cacheRead);
        writer.WriteNumber("output_tokens", outputTokens);
        writer.WriteEndObject();
    }
}

// POST /v1/messages/count_tokens: {"input_tokens": n}, the prompt as /v1/messages would count it.
internal sealed class CountTokensHandler(MockRequestLog log) : MockHandler(log)
{
    protected override async Task RespondAsync(MockCall call)
    {
        var prompt = new MockPrompt(call.Model);
        var system = call.Root.GetPropertyOrDefault("system");
        if (system.ValueKind != JsonValueKind.Undefined)
        {
            prompt.AddMessage("system");
            prompt.AppendContent(system);
        }

        var messages = call.Root.GetPropertyOrDefault("messages");
        if (messages.ValueKind == JsonValueKind.Array)
        {
            foreach (var message in messages.EnumerateArray())
            {
                prompt.AddMessage(message.GetString("role"));
                prompt.AppendContent(message.GetPropertyOrDefault("content"));
            }
        }

        using var buffer = new PooledBufferWriter(64);
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("input_tokens", MockUsage.Override(call.Headers, UsagePrompt) ?? prompt.Tokens);
            writer.WriteEndObject();
        }

        await MockJson.SendAsync(call.Context, StatusCodes.Status200OK, buffer);
    }
}
