using System.Text.Json;

namespace LlmGateway.Caching;

/// <summary>JSON helpers shared by the renderers that turn a cached answer into the other form (JSON or stream).</summary>
internal static class CachedAnswerJson
{
    /// <summary>Writes <paramref name="root"/>'s property <paramref name="name"/> unchanged, when it has one.</summary>
    public static void CopyProperty(Utf8JsonWriter writer, JsonElement root, string name)
    {
        if (root.TryGetProperty(name, out var value))
        {
            writer.WritePropertyName(name);
            value.WriteTo(writer);
        }
    }
}
