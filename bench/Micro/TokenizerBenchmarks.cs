using System.Text;
using BenchmarkDotNet.Attributes;
using LlmGateway.Accounting;
using LlmGateway.Forwarding;

namespace LlmGateway.Benchmarks;

/// <summary>
/// What counting prompts with a tokenizer costs, against the cheap bound that needs none: per request body, per KB
/// of English text (words the tokenizer's cache has seen, as in a conversation resent on every call of a run), per
/// KB of text it has not seen (random words: every word misses its cache), and the copy of delivered text on the
/// stream relay. The minimum over iterations is shown too: on a shared machine it is the figure least disturbed
/// by other work.
/// </summary>
[MemoryDiagnoser]
[MinColumn]
public class TokenizerBenchmarks
{
    private const int UnseenTexts = 4096;

    private readonly byte[] _request = Payloads.ChatRequest;
    private readonly byte[] _request100K = Payloads.ChatRequestOfSize(100 * 1024);
    private readonly LlmRequestInfo _info = Parse(Payloads.ChatRequest);
    private readonly LlmRequestInfo _info100K = Parse(Payloads.ChatRequestOfSize(100 * 1024));
    private readonly string _english1K = English(1024);
    private readonly string[] _unseen1K = RandomWords(UnseenTexts, 1024);
    private readonly byte[] _contentChunk = Payloads.ContentChunk;
    private readonly DeliveredText _delivered = new();
    private int _next;

    [GlobalSetup]
    public void Warm() => _ = TextTokenCounter.For(TokenizerKind.O200kBase)!.CountTokens(_english1K);

    [GlobalCleanup]
    public void Cleanup() => _delivered.Dispose();

    [Benchmark(Description = "PromptTokens.Bound (0.9 KB body)", Baseline = true)]
    public long Bound() => PromptTokens.Bound(_info.Prompt, TokenizerKind.O200kBase);

    [Benchmark(Description = "PromptTokens.Count o200k_base (0.9 KB body)")]
    public long CountO200k() => PromptTokens.Count(_request, _info.Prompt, TokenizerKind.O200kBase);

    [Benchmark(Description = "PromptTokens.Count cl100k_base (0.9 KB body)")]
    public long CountCl100k() => PromptTokens.Count(_request, _info.Prompt, TokenizerKind.Cl100kBase);

    [Benchmark(Description = "PromptTokens.Count o200k_base (100 KB body)")]
    public long CountO200k100K() => PromptTokens.Count(_request100K, _info100K.Prompt, TokenizerKind.O200kBase);

    [Benchmark(Description = "o200k_base, 1 KB of English, words seen before")]
    public long English1K()
    {
        var tally = new TokenTally(long.MaxValue, long.MaxValue);
        TextTokenCounter.Add(TextTokenCounter.For(TokenizerKind.O200kBase)!, _english1K, ref tally);
        return tally.Tokens;
    }

    [Benchmark(Description = "o200k_base, 1 KB of words never seen")]
    public long Unseen1K()
    {
        var tally = new TokenTally(long.MaxValue, long.MaxValue);
        TextTokenCounter.Add(TextTokenCounter.For(TokenizerKind.O200kBase)!, _unseen1K[_next++ % UnseenTexts], ref tally);
        return tally.Tokens;
    }

    [Benchmark(Description = "UsageReader.TryRead (content chunk), keeping its text")]
    public bool ReadChunkKeepingText()
    {
        if (_delivered.Length > 512 * 1024)
        {
            _delivered.Clear();
        }

        return UsageReader.TryRead(_contentChunk, out _, _delivered);
    }

    private static LlmRequestInfo Parse(byte[] body)
    {
        _ = LlmRequestInfo.TryParse(body, out var info, out _);
        return info;
    }

    /// <summary>The bench request's messages, repeated to <paramref name="length"/> characters.</summary>
    private static string English(int length)
    {
        using var request = System.Text.Json.JsonDocument.Parse(Payloads.ChatRequest);
        var text = new StringBuilder();
        while (text.Length < length)
        {
            foreach (var message in request.RootElement.GetProperty("messages").EnumerateArray())
            {
                text.Append(message.GetProperty("content").GetString()).Append(' ');
            }
        }

        return text.ToString(0, length);
    }

    /// <summary>Texts of random lowercase words with spaces: no word repeats, so each misses the tokenizer's cache.</summary>
    private static string[] RandomWords(int count, int length)
    {
        var random = new Random(42);
        var texts = new string[count];
        var text = new StringBuilder(length);
        for (var i = 0; i < count; i++)
        {
            text.Clear();
            while (text.Length < length)
            {
                var word = random.Next(3, 10);
                for (var c = 0; c < word && text.Length < length; c++)
                {
                    text.Append((char)('a' + random.Next(26)));
                }

                if (text.Length < length)
                {
                    text.Append(' ');
                }
            }

            texts[i] = text.ToString();
        }

        return texts;
    }
}
