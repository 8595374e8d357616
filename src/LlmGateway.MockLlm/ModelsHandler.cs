using System.Text.Json;
using Microsoft.Extensions.Configuration;
using static LlmGateway.MockLlm.MockLlmConstants;

namespace LlmGateway.MockLlm;

// GET /v1/models: the built-in mock models, then any listed under MockLlm:Models.
internal sealed class ModelsHandler(MockRequestLog log, IConfiguration? configuration)
{
    private static readonly string[] BuiltInModels = [DefaultModel, "mock-large", "mock-reasoning", "mock-embedding"];

    public async Task HandleAsync(HttpContext context)
    {
        MockCall.Record(context, log, [], model: null, stream: false);

        using var buffer = new PooledBufferWriter();
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("object", "list");
            writer.WriteStartArray("data");
            foreach (var model in BuiltInModels)
            {
                WriteModel(writer, model);
            }

            // Read per request so an edited configuration shows up without a restart.
            if (configuration is not null)
            {
                foreach (var entry in configuration.GetSection(ModelsKey).GetChildren())
                {
                    if (!string.IsNullOrEmpty(entry.Value) && Array.IndexOf(BuiltInModels, entry.Value) < 0)
                    {
                        WriteModel(writer, entry.Value);
                    }
                }
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        await MockJson.SendAsync(context, StatusCodes.Status200OK, buffer);
    }

    private static void WriteModel(Utf8JsonWriter writer, string id)
    {
        writer.WriteStartObject();
        writer.WriteString("id", id);
        writer.WriteString("object", "model");
        writer.WriteNumber("created", DefaultCreated);
        writer.WriteString("owned_by", "mock");
        writer.WriteEndObject();
    }
}
