using System.Text.Json;

namespace LlmGateway.Drift;

/// <summary>The names of the tools a request declares: OpenAI's tools[].function.name, Responses' and Anthropic's tools[].name.</summary>
internal static class DeclaredTools
{
    /// <summary>Whether the request body declares a tool of that name; read only when the answer asked for tools.</summary>
    public static HashSet<string> Read(ReadOnlySpan<byte> body)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var reader = new Utf8JsonReader(body);
        try
        {
            using var document = JsonDocument.ParseValue(ref reader);
            if (document.RootElement.ValueKind != JsonValueKind.Object
                || !document.RootElement.TryGetProperty("tools", out var tools) || tools.ValueKind != JsonValueKind.Array)
            {
                return names;
            }

            foreach (var tool in tools.EnumerateArray())
            {
                if (tool.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }

                var holder = tool.TryGetProperty("function", out var function) && function.ValueKind == JsonValueKind.Object ? function : tool;
                if (holder.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String && name.GetString() is { Length: > 0 } value)
                {
                    names.Add(value);
                }
            }
        }
        catch (JsonException)
        {
            // The gateway already checked the body; a body it could not read declares nothing.
        }

        return names;
    }
}
