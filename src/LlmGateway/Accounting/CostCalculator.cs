using LlmGateway.Configuration;

namespace LlmGateway.Accounting;

/// <summary>Usage × prices, in decimal so that sums of many small costs stay exact.</summary>
internal static class CostCalculator
{
    private const decimal PerMillion = 1_000_000m;

    /// <summary>
    /// Uncached input at the input price, cached input at the cached price, all output (reasoning
    /// tokens included, they are billed as output) at the output price.
    /// </summary>
    public static decimal Cost(in TokenUsage usage, in ModelPrices prices)
    {
        var cached = Math.Clamp(usage.CachedInputTokens, 0, Math.Max(0, usage.InputTokens));
        var uncached = Math.Max(0, usage.InputTokens - cached);
        var output = Math.Max(0, usage.OutputTokens);
        return ((uncached * prices.InputPerMTok) + (cached * prices.CachedInputPerMTok) + (output * prices.OutputPerMTok)) / PerMillion;
    }
}
