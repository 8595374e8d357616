namespace LlmGateway.MockLlm;

// GET {prefix}/mock/requests lists the request log as a JSON array; DELETE clears it and the scenario counters.
internal sealed class RequestLogHandler(MockRequestLog log)
{
    public async Task ListAsync(HttpContext context)
    {
        using var buffer = new PooledBufferWriter();
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartArray();
            foreach (var record in log.Snapshot())
            {
                writer.WriteStartObject();
                writer.WriteNumber("sequence", record.Sequence);
                writer.WriteString("receivedAt", record.ReceivedAt);
                writer.WriteString("method", record.Method);
                writer.WriteString("path", record.Path);
                writer.WriteString("model", record.Model);
                writer.WriteString("body", record.Body);
                writer.WriteStartObject("headers");
                foreach (var header in record.Headers)
                {
                    writer.WriteString(header.Key, header.Value);
                }

                writer.WriteEndObject();
                writer.WriteBoolean("stream", record.Stream);
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
        }

        await MockJson.SendAsync(context, StatusCodes.Status200OK, buffer);
    }

    public Task Clear(HttpContext context)
    {
        log.Clear();
        context.Response.StatusCode = StatusCodes.Status204NoContent;
        return Task.CompletedTask;
    }
}
