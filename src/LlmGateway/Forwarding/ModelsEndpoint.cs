using System.Text.Json;
using LlmGateway.Configuration;
using LlmGateway.Identity;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Forwarding;

/// <summary>GET /v1/models: the models the caller's key may use, in OpenAI's list format.</summary>
internal sealed class ModelsEndpoint(GatewayConfigProvider config)
{
    public async Task HandleAsync(HttpContext context)
    {
        var current = config.Current;
        RequestIds.For(context);
        if (CallerAuthenticator.Authenticate(context.Request, current, out var caller) is { } error)
        {
            await error.WriteAsync(context.Response);
            return;
        }

        var output = new System.Buffers.ArrayBufferWriter<byte>(1024);
        using (var writer = new Utf8JsonWriter(output))
        {
            writer.WriteStartObject();
            writer.WriteString("object", "list");
            writer.WriteStartArray("data");
            foreach (var (name, model) in current.Models)
            {
                if (!caller.MayUse(name) || !model.IsUsable)
                {
                    continue;
                }

                writer.WriteStartObject();
                writer.WriteString("id", name);
                writer.WriteString("object", "model");
                writer.WriteNumber("created", 0);
                writer.WriteString("owned_by", model.Provider.Name);
                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        context.Response.ContentType = "application/json";
        context.Response.ContentLength = output.WrittenCount;
        await context.Response.Body.WriteAsync(output.WrittenMemory, context.RequestAborted);
    }
}
