using LlmGateway.Configuration;

namespace LlmGateway.Accounting;

/// <summary>Usage × prices, in decimal so that sums of many small costs stay exact.</summary>
internal static class CostCalculator
{
    private const decimal PerMillion = 1_000_000m;

    /// <summary>
    /// Uncached input at the input price, cached input (cache reads) at the cached price, cache writes at the cache-write
    /// price, all output (reasoning tokens included, they are billed as output) at the output price.
    /// </summary>
    public static decimal Cost(in TokenUsage usage, in ModelPrices prices)
    {
        var input = Math.Max(0, usage.InputTokens);
        var cached = Math.Clamp(usage.CachedInputTokens, 0, input);
        var written = Math.Clamp(usage.CacheWriteTokens, 0, input - cached);
        var uncached = input - cached - written;
        var output = Math.Max(0, usage.OutputTokens);
        return ((uncached * prices.InputPerMTok) + (cached * prices.CachedInputPerMTok) + (written * prices.CacheWritePerMTok) + (output * prices.OutputPerMTok)) / PerMillion;
    }

    /// <summary>
    /// The most a call of <paramref name="promptTokens"/> prompt tokens and at most <paramref name="maxOutputTokens"/>
    /// output tokens can cost: every prompt token at the dearest price a prompt token can be billed at (input, cache
    /// read or cache write: Anthropic bills cache writes above the input price), every output token at the output price.
    /// What admission reserves, so that no split of the prompt between those prices can cost more than was reserved.
    /// </summary>
    public static decimal WorstCase(long promptTokens, long maxOutputTokens, in ModelPrices prices)
    {
        var prompt = Math.Max(0, promptTokens);
        var output = Math.Max(0, maxOutputTokens);
        var promptPrice = Math.Max(prices.InputPerMTok, Math.Max(prices.CachedInputPerMTok, prices.CacheWritePerMTok));
        return ((prompt * promptPrice) + (output * prices.OutputPerMTok)) / PerMillion;
    }
}
