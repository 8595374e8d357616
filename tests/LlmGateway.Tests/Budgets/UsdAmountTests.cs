using LlmGateway.Budgets;

namespace LlmGateway.Tests.Budgets;

public sealed class UsdAmountTests
{
    [Theory]
    [InlineData("0.0000000001", 1, 0)]
    [InlineData("0.03", 30_000_000, 30_000_000)]
    [InlineData("1.0000000005", 1_000_000_001, 1_000_000_000)]
    [InlineData("0", 0, 0)]
    [InlineData("-1", 0, 0)]
    public void ToNanos_ChargesRoundUp_LimitsRoundDown(string usd, long ceiling, long floor)
    {
        var value = decimal.Parse(usd, System.Globalization.CultureInfo.InvariantCulture);

        Assert.Equal(ceiling, UsdAmount.ToNanosCeiling(value));
        Assert.Equal(floor, UsdAmount.ToNanosFloor(value));
    }
}
