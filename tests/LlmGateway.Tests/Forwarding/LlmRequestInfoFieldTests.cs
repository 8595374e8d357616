using System.Text;
using System.Text.Json;
using CsCheck;
using LlmGateway.Configuration;
using LlmGateway.Forwarding;

namespace LlmGateway.Tests.Forwarding;

/// <summary>
/// The fields the gateway reads and the provider reads again: each once, of its type, and the reservation covering every
/// choice. The property tests decide "what the provider was asked for" by parsing the body as a provider does (the last
/// of duplicated keys wins) and run with a fixed seed and a bounded number of cases; a failure prints its seed.
/// </summary>
public sealed class LlmRequestInfoFieldTests
{
    /// <summary>Fixed, so CI runs the same cases every time; CsCheck names a failing case's own seed in its message.</summary>
    private const string Seed = "0N0XIzNsQ0O2";

    private static readonly ModelOptions ModelConfig = new() { Provider = "p", DefaultMaxOutputTokens = 100 };

    private static readonly string[] Fields =
        ["model", "stream", "stream_options", "max_tokens", "max_completion_tokens", "max_output_tokens", "n", "best_of", "temperature", "seed"];

    private static readonly string[] Values =
        ["\"m1\"", "\"m2\"", "1", "2", "50", "100", "4000", "900000", "0", "-1", "1.5", "\"10\"", "true", "false", "null", "{}", "[]",
         "{\"include_usage\":true}", "{\"include_usage\":\"no\"}", "{\"include_usage\":true,\"include_usage\":false}"];

    [Theory]
    [InlineData("""{"model":"m","max_tokens":1,"max_tokens":900000}""", "max_tokens")]
    [InlineData("""{"model":"m","model":"other"}""", "model")]
    [InlineData("""{"model":"m","n":1,"n":50}""", "n")]
    [InlineData("""{"model":"m","stream":false,"stream":true}""", "stream")]
    [InlineData("""{"model":"m","seed":1,"seed":2}""", "seed")]
    [InlineData("""{"model":"m","stream_options":{"include_usage":false,"include_usage":true}}""", "stream_options.include_usage")]
    public void DuplicatedField_IsRefused_NamingIt(string json, string param)
    {
        var error = LlmRequestInfo.TryParse(Encoding.UTF8.GetBytes(json), out _, out var errorParam);

        Assert.NotNull(error);
        Assert.Equal(param, errorParam);
    }

    [Theory]
    [InlineData("""{"model":"m","n":"5"}""", "n")]
    [InlineData("""{"model":"m","n":0}""", "n")]
    [InlineData("""{"model":"m","best_of":1.5}""", "best_of")]
    [InlineData("""{"model":"m","temperature":"0"}""", "temperature")]
    [InlineData("""{"model":"m","seed":"7"}""", "seed")]
    [InlineData("""{"model":"m","stream_options":true}""", "stream_options")]
    [InlineData("""{"model":"m","max_completion_tokens":"10"}""", "max_completion_tokens")]
    public void MistypedField_IsRefused_NamingIt(string json, string param)
    {
        var error = LlmRequestInfo.TryParse(Encoding.UTF8.GetBytes(json), out _, out var errorParam);

        Assert.NotNull(error);
        Assert.Equal(param, errorParam);
    }

    [Theory]
    [InlineData("""{"model":"m","n":50,"max_tokens":100}""", 5000)]
    [InlineData("""{"model":"m","best_of":3,"n":2,"max_tokens":10}""", 30)]
    [InlineData("""{"model":"m","n":4}""", 400)]
    [InlineData("""{"model":"m","max_tokens":10,"max_completion_tokens":70}""", 70)]
    public void Reservation_CoversEveryChoiceAtItsMaximum(string json, long expected)
    {
        Assert.Null(LlmRequestInfo.TryParse(Encoding.UTF8.GetBytes(json), out var info, out _));
        Assert.Equal(expected, info.MaxOutputFor(ModelConfig));
    }

    [Fact]
    public void AnyBodyOfReadFields_IsRefused_OrReservesAtLeastWhatTheProviderWillGenerate()
    {
        var entry = Gen.Select(Gen.Int[0, Fields.Length - 1], Gen.Int[0, Values.Length - 1], (name, value) => $"\"{Fields[name]}\":{Values[value]}");
        var body = entry.List[0, 8].Select(entries => "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]" + string.Concat(entries.Select(e => "," + e)) + "}");

        body.Sample(json =>
        {
            var error = LlmRequestInfo.TryParse(Encoding.UTF8.GetBytes(json), out var info, out _);
            if (error is not null)
            {
                return; // refused with a 400 before any upstream call
            }

            var provider = ProviderView.Parse(json);
            Assert.Equal(provider.Model, info.Model);
            Assert.Equal(provider.Stream, info.Stream);
            Assert.True(
                info.MaxOutputFor(ModelConfig) >= provider.Choices * provider.MaxOutput,
                $"reserved {info.MaxOutputFor(ModelConfig)} output tokens; the provider generates up to {provider.Choices} × {provider.MaxOutput}");
        }, iter: 3000, seed: Seed);
    }

    [Fact]
    public void AnyBytes_AreParsedOrRefused_NeverThrow()
    {
        Gen.Byte.Array[0, 64].Sample(bytes =>
        {
            _ = LlmRequestInfo.TryParse(bytes, out _, out _);
        }, iter: 2000, seed: Seed);
    }

    /// <summary>The body as a provider reads it: JSON with the last of duplicated keys winning, defaults where absent.</summary>
    private sealed record ProviderView(string? Model, bool Stream, long Choices, long MaxOutput)
    {
        public static ProviderView Parse(string json)
        {
            using var document = JsonDocument.Parse(json);
            var last = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
            foreach (var property in document.RootElement.EnumerateObject())
            {
                last[property.Name] = property.Value.Clone();
            }

            long? Positive(string name) =>
                last.TryGetValue(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) && number > 0 ? number : null;

            var maxOutput = new[] { Positive("max_tokens"), Positive("max_completion_tokens"), Positive("max_output_tokens") }.Max() ?? ModelConfig.DefaultMaxOutputTokens;
            var choices = Math.Max(Positive("n") ?? 1, Positive("best_of") ?? 1);
            var model = last.TryGetValue("model", out var m) && m.ValueKind == JsonValueKind.String ? m.GetString() : null;
            var stream = last.TryGetValue("stream", out var s) && s.ValueKind == JsonValueKind.True;
            return new ProviderView(model, stream, choices, maxOutput);
        }
    }
}
