using CsCheck;
using LlmGateway.Accounting;
using LlmGateway.Configuration;

namespace LlmGateway.Tests.Accounting;

public sealed class CostCalculatorTests
{
    private static readonly ModelPrices Gpt4o = new(2.50m, 1.25m, 10.00m);

    [Fact]
    public void Cost_SplitsCachedInput_AndBillsReasoningAsOutput()
    {
        var usage = new TokenUsage(InputTokens: 1000, CachedInputTokens: 400, OutputTokens: 500, ReasoningTokens: 200);

        Assert.Equal(0.007m, CostCalculator.Cost(usage, Gpt4o));
    }

    [Fact]
    public void Cost_IsExactInDecimal_OverManySmallCalls()
    {
        var total = 0m;
        for (var i = 0; i < 100_000; i++)
        {
            total += CostCalculator.Cost(new TokenUsage(3, 0, 7, 0), new ModelPrices(0.15m, 0.075m, 0.60m));
        }

        // 100,000 × (3 × 0.15 + 7 × 0.60) / 1e6 = 0.465 exactly; a double sum drifts.
        Assert.Equal(0.465m, total);
    }

    [Fact]
    public void Cost_ClampsCachedAboveInput_AndNegativeCounts()
    {
        Assert.Equal(1.25m, CostCalculator.Cost(new TokenUsage(1_000_000, 5_000_000, -3, 0), Gpt4o));
    }

    [Fact]
    public void Cost_OfFreeModel_IsZero()
    {
        Assert.Equal(0m, CostCalculator.Cost(new TokenUsage(1000, 0, 1000, 0), new ModelPrices(0, 0, 0)));
    }

    [Fact]
    public void WorstCase_IsAtLeastTheCostOfAnySplitOfThePrompt_AndAnyOutputUpToTheMaximum()
    {
        // Prices in tenths of a cent per million (cache writes above, at or below the input price, as Anthropic's 1.25×
        // and 2× writes are); the prompt split between uncached input, cache reads and cache writes in any proportion.
        var price = Gen.Int[0, 20_000].Select(p => p / 1000m);
        Gen.Select(Gen.Select(price, price, price, price), Gen.Long[0, 200_000], Gen.Long[0, 50_000], Gen.Double[0, 1], Gen.Double[0, 1], Gen.Double[0, 1])
            .Sample((prices, prompt, maxOutput, readShare, writeShare, outputShare) =>
            {
                var model = new ModelPrices(prices.Item1, prices.Item2, prices.Item3, prices.Item4);
                var read = (long)(prompt * readShare);
                var written = (long)((prompt - read) * writeShare);
                var usage = new TokenUsage(prompt, read, (long)(maxOutput * outputShare), 0, written);
                var cost = CostCalculator.Cost(usage, model);
                var worst = CostCalculator.WorstCase(prompt, maxOutput, model);
                Assert.True(cost <= worst, $"cost {cost} > reserved {worst} for prompt {prompt} (read {read}, written {written}), prices {model}");
            }, iter: 2000, seed: "0N0XIzNsQ0O2");
    }

    [Fact]
    public void WorstCase_PricesThePromptAtTheCacheWritePrice_WhenThatIsTheDearest()
    {
        // Claude Sonnet's prices: input 3, cache read 0.30, cache write 3.75, output 15 per million.
        var sonnet = new ModelPrices(3m, 0.30m, 15m, 3.75m);

        Assert.Equal((1_000_000 * 3.75m + 1000 * 15m) / 1_000_000m, CostCalculator.WorstCase(1_000_000, 1000, sonnet));
        Assert.Equal(CostCalculator.Cost(new TokenUsage(1_000_000, 0, 1000, 0, CacheWriteTokens: 1_000_000), sonnet), CostCalculator.WorstCase(1_000_000, 1000, sonnet));
    }
}
