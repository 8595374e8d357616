using System.Text.Json;
using static LlmGateway.MockLlm.MockLlmConstants;

namespace LlmGateway.MockLlm;

// POST /v1/chat/completions: OpenAI's chat.completion object, or its chat.completion.chunk stream.
internal sealed class ChatCompletionsHandler(MockRequestLog log) : MockHandler(log)
{
    private const string IdPrefix = "chatcmpl-";
    private const string ChunkObject = "chat.completion.chunk";
    private const string ToolCallsFinish = "tool_calls";

    protected override async Task RespondAsync(MockCall call)
    {
        var prompt = new MockPrompt(call.Model);
        string? lastUserText = null;
        string? lastRole = null;
        var messages = call.Root.GetPropertyOrDefault("messages");
        if (messages.ValueKind == JsonValueKind.Array)
        {
            foreach (var message in messages.EnumerateArray())
            {
                lastRole = message.GetString("role");
                prompt.AddMessage(lastRole, message.GetString("name"));
                var text = prompt.AppendContent(message.GetPropertyOrDefault("content"));
                if (lastRole == "user")
                {
                    lastUserText = text;
                }
            }
        }

        // X-Mock-Tool-Call answers a user turn that offers tools with a call to the named tool; the reply text is its arguments.
        string? toolName = null;
        MockReply reply;
        var tools = call.Root.GetPropertyOrDefault("tools");
        if (call.Headers[ToolCall].ToString() is { Length: > 0 } name
            && tools.ValueKind == JsonValueKind.Array && tools.GetArrayLength() > 0 && lastRole == "user")
        {
            toolName = name;
            var arguments = call.Headers[ToolArguments].ToString() is { Length: > 0 } json ? json : "{}";
            reply = MockReply.Create(call.Headers, call.Model, prompt, arguments, MockReply.CountWords(arguments));
        }
        else
        {
            var maxWords = call.Root.GetInt32("max_completion_tokens") ?? call.Root.GetInt32("max_tokens");
            reply = MockReply.Create(call.Headers, call.Model, prompt, lastUserText, maxWords);
        }

        if (call.Stream)
        {
            await StreamAsync(call, reply, toolName);
        }
        else
        {
            await WriteCompletionAsync(call, reply, toolName);
        }
    }

    private static async Task WriteCompletionAsync(MockCall call, MockReply reply, string? toolName)
    {
        using var buffer = new PooledBufferWriter();
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartObject();
            reply.WriteCompletionHeader(writer, IdPrefix, "chat.completion", call.Model);
            writer.WriteStartArray("choices");
            writer.WriteStartObject();
            writer.WriteNumber("index", 0);
            writer.WriteStartObject("message");
            writer.WriteString("role", "assistant");
            if (toolName is null)
            {
                writer.WriteString("content", reply.Text);
            }
            else
            {
                writer.WriteNull("content");
                WriteToolCall(writer, reply, toolName, streamed: false);
            }

            writer.WriteEndObject();
            writer.WriteNull("logprobs");
            writer.WriteString("finish_reason", toolName is null ? reply.FinishReason : ToolCallsFinish);
            writer.WriteEndObject();
            writer.WriteEndArray();
            reply.Usage.WriteChat(writer);
            writer.WriteEndObject();
        }

        await MockJson.SendAsync(call.Context, StatusCodes.Status200OK, buffer);
    }

    private static async Task StreamAsync(MockCall call, MockReply reply, string? toolName)
    {
        var includeUsage = call.IncludeUsage;
        using var stream = new MockEventStream(call);

        var writer = BeginChunk(stream, reply, call.Model);
        writer.WriteString("role", "assistant");
        if (toolName is null)
        {
            writer.WriteString("content", string.Empty);
        }
        else
        {
            writer.WriteNull("content");
            WriteToolCall(writer, reply, toolName, streamed: true);
        }

        EndChunk(writer, null, includeUsage);
        await stream.SendEventAsync();

        if (toolName is null)
        {
            var text = reply.Text;
            for (int start = 0, end; start < text.Length; start = end)
            {
                end = MockReply.NextChunkEnd(text, start);
                writer = BeginChunk(stream, reply, call.Model);
                writer.WriteString("content", text.AsSpan(start, end - start));
                EndChunk(writer, null, includeUsage);
                if (!await stream.SendContentEventAsync())
                {
                    return;
                }
            }
        }
        else
        {
            writer = BeginChunk(stream, reply, call.Model);
            writer.WriteStartArray("tool_calls");
            writer.WriteStartObject();
            writer.WriteNumber("index", 0);
            writer.WriteStartObject("function");
            writer.WriteString("arguments", reply.Text);
            writer.WriteEndObject();
            writer.WriteEndObject();
            writer.WriteEndArray();
            EndChunk(writer, null, includeUsage);
            if (!await stream.SendContentEventAsync())
            {
                return;
            }
        }

        if (!await stream.EndContentAsync())
        {
            return;
        }

        writer = BeginChunk(stream, reply, call.Model);
        EndChunk(writer, toolName is null ? reply.FinishReason : ToolCallsFinish, includeUsage);
        await stream.SendEventAsync();

        await stream.SendCompletionEndAsync(reply, IdPrefix, ChunkObject, call.Model, includeUsage, chatUsage: true);
    }

    // A whole tool call, or (streamed) its opening delta, whose arguments follow in the next chunk.
    private static void WriteToolCall(Utf8JsonWriter writer, MockReply reply, string toolName, bool streamed)
    {
        writer.WriteStartArray("tool_calls");
        writer.WriteStartObject();
        if (streamed)
        {
            writer.WriteNumber("index", 0);
        }

        writer.WriteString("id", reply.Id("call_", 1));
        writer.WriteString("type", "function");
        writer.WriteStartObject("function");
        writer.WriteString("name", toolName);
        writer.WriteString("arguments", streamed ? string.Empty : reply.Text);
        writer.WriteEndObject();
        writer.WriteEndObject();
        writer.WriteEndArray();
    }

    // Opens a chunk up to its delta object; EndChunk closes it.
    private static Utf8JsonWriter BeginChunk(MockEventStream stream, MockReply reply, string model)
    {
        var writer = stream.BeginEvent();
        writer.WriteStartObject();
        reply.WriteCompletionHeader(writer, IdPrefix, ChunkObject, model);
        writer.WriteStartArray("choices");
        writer.WriteStartObject();
        writer.WriteNumber("index", 0);
        writer.WriteStartObject("delta");
        return writer;
    }

    // OpenAI's rule: with include_usage every chunk ends in "usage":null, without it no chunk has the property.
    private static void EndChunk(Utf8JsonWriter writer, string? finishReason, bool includeUsage)
    {
        writer.WriteEndObject();
        writer.WriteNull("logprobs");
        writer.WriteString("finish_reason", finishReason);
        writer.WriteEndObject();
        writer.WriteEndArray();
        if (includeUsage)
        {
            writer.WriteNull("usage");
        }

        writer.WriteEndObject();
    }
}
