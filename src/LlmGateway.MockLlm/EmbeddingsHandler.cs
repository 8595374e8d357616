using System.Buffers;
using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using static LlmGateway.MockLlm.MockLlmConstants;

namespace LlmGateway.MockLlm;

// POST /v1/embeddings: one unit vector per input item, derived from a hash of the model and the item.
internal sealed class EmbeddingsHandler(MockRequestLog log) : MockHandler(log)
{
    private const int DefaultDimensions = 8;
    private const int MaxDimensions = 16_384;

    protected override async Task RespondAsync(MockCall call)
    {
        var root = call.Root;
        var dimensions = root.GetInt32("dimensions") is int requested && requested > 0 ? Math.Min(requested, MaxDimensions) : DefaultDimensions;
        // The official OpenAI SDKs ask for base64 (little-endian float32) by default.
        var base64 = root.GetString("encoding_format") == "base64";
        var input = root.GetPropertyOrDefault("input");

        using var buffer = new PooledBufferWriter();
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("object", "list");
            writer.WriteStartArray("data");
            var promptTokens = 0;
            var index = 0;
            if (input.ValueKind == JsonValueKind.Array && !(input.GetArrayLength() > 0 && input[0].ValueKind == JsonValueKind.Number))
            {
                foreach (var item in input.EnumerateArray())
                {
                    promptTokens += WriteEmbedding(writer, index++, call.Model, item, dimensions, base64);
                }
            }
            else if (input.ValueKind is JsonValueKind.String or JsonValueKind.Array)
            {
                // One string, or one list of token ids.
                promptTokens += WriteEmbedding(writer, index, call.Model, input, dimensions, base64);
            }

            writer.WriteEndArray();
            writer.WriteString("model", call.Model);
            promptTokens = MockUsage.Override(call.Headers, UsagePrompt) ?? promptTokens;
            writer.WriteStartObject("usage");
            writer.WriteNumber("prompt_tokens", promptTokens);
            writer.WriteNumber("total_tokens", promptTokens);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        await MockJson.SendAsync(call.Context, StatusCodes.Status200OK, buffer);
    }

    // Writes one embedding object; returns the item's prompt tokens.
    private static int WriteEmbedding(Utf8JsonWriter writer, int index, string model, JsonElement item, int dimensions, bool base64)
    {
        var isText = item.ValueKind == JsonValueKind.String;
        var text = isText ? item.GetString()! : item.GetRawText();
        var tokens = isText
            ? Math.Max(1, MockTokenizers.For(model)?.CountTokens(text) ?? (Encoding.UTF8.GetByteCount(text) + 3) / 4)
            : item.ValueKind == JsonValueKind.Array ? item.GetArrayLength() : 1;

        writer.WriteStartObject();
        writer.WriteString("object", "embedding");
        writer.WriteNumber("index", index);
        var vector = ArrayPool<float>.Shared.Rent(dimensions);
        try
        {
            Fill(vector.AsSpan(0, dimensions), SHA256.HashData(Encoding.UTF8.GetBytes(model + "\n" + text)));
            if (base64)
            {
                var bytes = ArrayPool<byte>.Shared.Rent(dimensions * sizeof(float));
                for (var i = 0; i < dimensions; i++)
                {
                    BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * sizeof(float)), vector[i]);
                }

                writer.WriteBase64String("embedding", bytes.AsSpan(0, dimensions * sizeof(float)));
                ArrayPool<byte>.Shared.Return(bytes);
            }
            else
            {
                writer.WriteStartArray("embedding");
                for (var i = 0; i < dimensions; i++)
                {
                    writer.WriteNumberValue(vector[i]);
                }

                writer.WriteEndArray();
            }
        }
        finally
        {
            ArrayPool<float>.Shared.Return(vector);
        }

        writer.WriteEndObject();
        return tokens;
    }

    // A SplitMix64 sequence seeded by the hash gives values in [-1, 1); dividing by the norm makes a unit vector.
    private static void Fill(Span<float> vector, byte[] hash)
    {
        var state = BinaryPrimitives.ReadUInt64LittleEndian(hash);
        var values = new double[vector.Length];
        var sumOfSquares = 0d;
        for (var i = 0; i < values.Length; i++)
        {
            state += 0x9E3779B97F4A7C15UL;
            var z = state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            z ^= z >> 31;
            values[i] = ((z >> 11) * (1d / (1UL << 53)) * 2) - 1;
            sumOfSquares += values[i] * values[i];
        }

        var norm = Math.Sqrt(sumOfSquares);
        for (var i = 0; i < values.Length; i++)
        {
            vector[i] = (float)(values[i] / norm);
        }
    }
}
