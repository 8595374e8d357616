using System.Text.Encodings.Web;
using System.Text.Json;

namespace LlmGateway.MockLlm;

// Compact JSON with a fixed property order, so the same request always produces the same bytes.
internal static class MockJson
{
    public const string ApplicationJson = "application/json";

    // Relaxed escaping keeps reply text readable ("What's 2+2?" rather than "What\u0027s 2\u002B2?"); no HTML is involved.
    private static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static Utf8JsonWriter CreateWriter(PooledBufferWriter buffer) => new(buffer, WriterOptions);

    public static async Task SendAsync(HttpContext context, int statusCode, PooledBufferWriter buffer, string contentType = ApplicationJson)
    {
        var response = context.Response;
        response.StatusCode = statusCode;
        response.ContentType = contentType;
        response.ContentLength = buffer.WrittenCount;
        await response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
    }

    public static string? GetString(this JsonElement element, string propertyName)
        => element.ValueKind == JsonValueKind.Object
            && element.TryGetProperty(propertyName, out var value)
            && value.ValueKind == JsonValueKind.String
                ? value.GetString()
                : null;

    public static int? GetInt32(this JsonElement element, string propertyName)
        => element.ValueKind == JsonValueKind.Object
            && element.TryGetProperty(propertyName, out var value)
            && value.ValueKind == JsonValueKind.Number
            && value.TryGetInt32(out var number)
                ? number
                : null;

    public static bool IsTrue(this JsonElement element, string propertyName)
        => element.ValueKind == JsonValueKind.Object
            && element.TryGetProperty(propertyName, out var value)
            && value.ValueKind == JsonValueKind.True;

    public static JsonElement GetPropertyOrDefault(this JsonElement element, string propertyName)
        => element.ValueKind == JsonValueKind.Object && element.TryGetProperty(propertyName, out var value) ? value : default;
}
