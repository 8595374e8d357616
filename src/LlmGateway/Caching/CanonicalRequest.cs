using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LlmGateway.Configuration;

namespace LlmGateway.Caching;

/// <summary>
/// A request body reduced to what determines its answer: object keys sorted, insignificant whitespace, string
/// escapes and number spellings (1.0 vs 1) normalized, and <c>stream</c>, <c>stream_options</c> and <c>user</c>
/// left out (they change the answer's form or its attribution, not its content).
/// </summary>
internal sealed class CanonicalRequest
{
    private static readonly string[] Ignored = ["stream", "stream_options", "user"];

    private CanonicalRequest(byte[] json) => Json = json;

    /// <summary>The canonical JSON (UTF-8).</summary>
    public byte[] Json { get; }

    /// <summary>Canonicalizes a body already known to be a JSON object (LlmRequestInfo checked it).</summary>
    public static CanonicalRequest Create(ReadOnlyMemory<byte> body)
    {
        using var document = JsonDocument.Parse(body);
        var root = document.RootElement;
        var output = new ArrayBufferWriter<byte>(body.Length + 16);
        using (var writer = new Utf8JsonWriter(output))
        {
            Write(writer, root, topLevel: true);
        }

        return new CanonicalRequest(output.WrittenSpan.ToArray());
    }

    /// <summary>Hex SHA-256 of the canonical request together with what else selects the answer.</summary>
    public string Hash(LlmEndpoint endpoint, ModelRoute model, string scope)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"llmgw-cache-v1\n{endpoint}\n{model.Name}\n{model.UpstreamModel}\n{scope}\n"));
        hash.AppendData(Json);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    private static void Write(Utf8JsonWriter writer, JsonElement element, bool topLevel)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var properties = new List<JsonProperty>();
                foreach (var property in element.EnumerateObject())
                {
                    if (!topLevel || Array.IndexOf(Ignored, property.Name) < 0)
                    {
                        properties.Add(property);
                    }
                }

                properties.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
                writer.WriteStartObject();
                foreach (var property in properties)
                {
                    writer.WritePropertyName(property.Name);
                    Write(writer, property.Value, topLevel: false);
                }

                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray())
                {
                    Write(writer, item, topLevel: false);
                }

                writer.WriteEndArray();
                break;
            case JsonValueKind.String:
                writer.WriteStringValue(element.GetString());
                break;
            case JsonValueKind.Number:
                if (element.TryGetInt64(out var integer))
                {
                    writer.WriteNumberValue(integer);
                }
                else if (element.TryGetDecimal(out var number))
                {
                    // Dividing by 1.000... drops trailing zeros, so 0.50 and 0.5 are one value.
                    writer.WriteNumberValue(number / 1.000000000000000000000000000000000m);
                }
                else
                {
                    writer.WriteRawValue(element.GetRawText());
                }

                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }
}
