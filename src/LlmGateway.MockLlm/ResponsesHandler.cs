using System.Text.Json;

namespace LlmGateway.MockLlm;

// POST /v1/responses: the Responses API object, or its typed event stream (which ends without [DONE]).
internal sealed class ResponsesHandler(MockRequestLog log) : MockHandler(log)
{
    protected override async Task RespondAsync(MockCall call)
    {
        var prompt = new MockPrompt(call.Model);
        string? lastUserText = null;
        if (call.Root.GetString("instructions") is { } instructions)
        {
            prompt.AddMessage("developer");
            prompt.Append(instructions);
        }

        var input = call.Root.GetPropertyOrDefault("input");
        if (input.ValueKind == JsonValueKind.String)
        {
            prompt.AddMessage("user");
            lastUserText = prompt.AppendContent(input);
        }
        else if (input.ValueKind == JsonValueKind.Array)
        {
            foreach (var item in input.EnumerateArray())
            {
                // Message items carry "content"; a function_call_output item carries "output".
                var content = item.GetPropertyOrDefault("content");
                prompt.AddMessage(item.GetString("role"));
                var text = content.ValueKind == JsonValueKind.Undefined
                    ? prompt.AppendContent(item.GetPropertyOrDefault("output"))
                    : prompt.AppendContent(content);
                if (item.GetString("role") == "user")
                {
                    lastUserText = text;
                }
            }
        }

        var reply = MockReply.Create(call.Headers, call.Model, prompt, lastUserText, call.Root.GetInt32("max_output_tokens"));
        if (call.Stream)
        {
            await StreamAsync(call, reply);
            return;
        }

        using var buffer = new PooledBufferWriter();
        using (var writer = MockJson.CreateWriter(buffer))
        {
            WriteResponse(writer, reply, call.Model, completed: true);
        }

        await MockJson.SendAsync(call.Context, StatusCodes.Status200OK, buffer);
    }

    private static async Task StreamAsync(MockCall call, MockReply reply)
    {
        using var stream = new MockEventStream(call);
        var sequence = 0;
        var itemId = reply.Id("msg_", 1);

        await SendResponseEventAsync(stream, "response.created", sequence++, reply, call.Model, completed: false);
        await SendResponseEventAsync(stream, "response.in_progress", sequence++, reply, call.Model, completed: false);
        await SendItemEventAsync(stream, "response.output_item.added", sequence++, reply, completed: false);
        await SendPartEventAsync(stream, "response.content_part.added", sequence++, itemId, string.Empty);

        var text = reply.Text;
        for (int start = 0, end; start < text.Length; start = end)
        {
            end = MockReply.NextChunkEnd(text, start);
            var writer = BeginEvent(stream, "response.output_text.delta", sequence++);
            WriteContentPosition(writer, itemId);
            writer.WriteString("delta", text.AsSpan(start, end - start));
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

        var done = BeginEvent(stream, "response.output_text.done", sequence++);
        WriteContentPosition(done, itemId);
        done.WriteString("text", text);
        await SendAsync(stream, done);

        await SendPartEventAsync(stream, "response.content_part.done", sequence++, itemId, text);
        await SendItemEventAsync(stream, "response.output_item.done", sequence++, reply, completed: true);
        await SendResponseEventAsync(stream, "response.completed", sequence, reply, call.Model, completed: true);
    }

    private static Task SendResponseEventAsync(MockEventStream stream, string type, int sequence, MockReply reply, string model, bool completed)
    {
        var writer = BeginEvent(stream, type, sequence);
        writer.WritePropertyName("response");
        WriteResponse(writer, reply, model, completed);
        return SendAsync(stream, writer);
    }

    private static Task SendItemEventAsync(MockEventStream stream, string type, int sequence, MockReply reply, bool completed)
    {
        var writer = BeginEvent(stream, type, sequence);
        writer.WriteNumber("output_index", 0);
        writer.WritePropertyName("item");
        WriteMessage(writer, reply, completed);
        return SendAsync(stream, writer);
    }

    private static Task SendPartEventAsync(MockEventStream stream, string type, int sequence, string itemId, string text)
    {
        var writer = BeginEvent(stream, type, sequence);
        WriteContentPosition(writer, itemId);
        writer.WritePropertyName("part");
        WriteOutputText(writer, text);
        return SendAsync(stream, writer);
    }

    // Every Responses event repeats its type inside the data, then numbers itself.
    private static Utf8JsonWriter BeginEvent(MockEventStream stream, string type, int sequence)
    {
        var writer = stream.BeginEvent(type);
        writer.WriteStartObject();
        writer.WriteString("type", type);
        writer.WriteNumber("sequence_number", sequence);
        return writer;
    }

    private static Task SendAsync(MockEventStream stream, Utf8JsonWriter writer)
    {
        writer.WriteEndObject();
        return stream.SendEventAsync();
    }

    private static void WriteContentPosition(Utf8JsonWriter writer, string itemId)
    {
        writer.WriteString("item_id", itemId);
        writer.WriteNumber("output_index", 0);
        writer.WriteNumber("content_index", 0);
    }

    // The response object: in progress (no output, usage null) or completed (the message and usage).
    private static void WriteResponse(Utf8JsonWriter writer, MockReply reply, string model, bool completed)
    {
        writer.WriteStartObject();
        writer.WriteString("id", reply.Id("resp_"));
        writer.WriteString("object", "response");
        writer.WriteNumber("created_at", reply.Created);
        writer.WriteString("status", completed ? "completed" : "in_progress");
        writer.WriteNull("error");
        writer.WriteNull("incomplete_details");
        writer.WriteString("model", model);
        writer.WriteStartArray("output");
        if (completed)
        {
            WriteMessage(writer, reply, completed: true);
        }

        writer.WriteEndArray();
        if (completed)
        {
            reply.Usage.WriteResponses(writer);
        }
        else
        {
            writer.WriteNull("usage");
        }

        writer.WriteEndObject();
    }

    private static void WriteMessage(Utf8JsonWriter writer, MockReply reply, bool completed)
    {
        writer.WriteStartObject();
        writer.WriteString("type", "message");
        writer.WriteString("id", reply.Id("msg_", 1));
        writer.WriteString("status", completed ? "completed" : "in_progress");
        writer.WriteString("role", "assistant");
        writer.WriteStartArray("content");
        if (completed)
        {
            WriteOutputText(writer, reply.Text);
        }

        writer.WriteEndArray();
        writer.WriteEndObject();
    }

    private static void WriteOutputText(Utf8JsonWriter writer, string text)
    {
        writer.WriteStartObject();
        writer.WriteString("type", "output_text");
        writer.WriteString("text", text);
        writer.WriteStartArray("annotations");
        writer.WriteEndArray();
        writer.WriteEndObject();
    }
}
