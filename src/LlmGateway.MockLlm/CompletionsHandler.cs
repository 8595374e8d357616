using System.Text.Json;

namespace LlmGateway.MockLlm;

// POST /v1/completions: the legacy text_completion object, or its stream.
internal sealed class CompletionsHandler(MockRequestLog log) : MockHandler(log)
{
    private const string IdPrefix = "cmpl-";
    private const string ObjectType = "text_completion";

    protected override async Task RespondAsync(MockCall call)
    {
        var prompt = new MockPrompt(call.Model);
        string? lastText = null;
        var input = call.Root.GetPropertyOrDefault("prompt");
        if (input.ValueKind == JsonValueKind.String)
        {
            lastText = prompt.AppendContent(input);
        }
        else if (input.ValueKind == JsonValueKind.Array)
        {
            // A list of prompts, or token ids: one token array, or a list of them.
            if (input.GetArrayLength() > 0 && input[0].ValueKind == JsonValueKind.Number)
            {
                prompt.Append(input.GetRawText());
            }
            else
            {
                foreach (var item in input.EnumerateArray())
                {
                    if (item.ValueKind == JsonValueKind.String)
                    {
                        lastText = prompt.AppendContent(item);
                    }
                    else
                    {
                        prompt.Append(item.GetRawText());
                    }
                }
            }
        }

        var reply = MockReply.Create(call.Headers, call.Model, prompt, lastText, call.Root.GetInt32("max_tokens"));
        if (call.Stream)
        {
            await StreamAsync(call, reply);
        }
        else
        {
            await WriteCompletionAsync(call, reply);
        }
    }

    private static async Task WriteCompletionAsync(MockCall call, MockReply reply)
    {
        using var buffer = new PooledBufferWriter();
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartObject();
            reply.WriteCompletionHeader(writer, IdPrefix, ObjectType, call.Model);
            WriteChoice(writer, reply.Text, reply.FinishReason);
            reply.Usage.WriteCompletions(writer);
            writer.WriteEndObject();
        }

        await MockJson.SendAsync(call.Context, StatusCodes.Status200OK, buffer);
    }

    private static async Task StreamAsync(MockCall call, MockReply reply)
    {
        var includeUsage = call.IncludeUsage;
        using var stream = new MockEventStream(call);

        var text = reply.Text;
        for (int start = 0, end; start < text.Length; start = end)
        {
            end = MockReply.NextChunkEnd(text, start);
            WriteChunk(stream, reply, call.Model, text.AsSpan(start, end - start), null, includeUsage);
            if (!await stream.SendContentEventAsync())
            {
                return;
            }
        }

        if (!await stream.EndContentAsync())
        {
            return;
        }

        WriteChunk(stream, reply, call.Model, [], reply.FinishReason, includeUsage);
        await stream.SendEventAsync();

        await stream.SendCompletionEndAsync(reply, IdPrefix, ObjectType, call.Model, includeUsage, chatUsage: false);
    }

    private static void WriteChunk(MockEventStream stream, MockReply reply, string model, ReadOnlySpan<char> text, string? finishReason, bool includeUsage)
    {
        var writer = stream.BeginEvent();
        writer.WriteStartObject();
        reply.WriteCompletionHeader(writer, IdPrefix, ObjectType, model);
        WriteChoice(writer, text, finishReason);
        if (includeUsage)
        {
            writer.WriteNull("usage");
        }

        writer.WriteEndObject();
    }

    private static void WriteChoice(Utf8JsonWriter writer, ReadOnlySpan<char> text, string? finishReason)
    {
        writer.WriteStartArray("choices");
        writer.WriteStartObject();
        writer.WriteString("text", text);
        writer.WriteNumber("index", 0);
        writer.WriteNull("logprobs");
        writer.WriteString("finish_reason", finishReason);

        writer.WriteEndObject();
        writer.WriteEndArray();
    }
}
