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
}
