using LlmGateway.Budgets;
using LlmGateway.Configuration;

namespace LlmGateway.Tests.Budgets;

public sealed class BudgetPeriodsTests
{
    [Theory]
    [InlineData(BudgetPeriod.Day, "2026-11-21T10:00:00Z", "d20261121", "2026-11-22T00:00:00Z")]
    [InlineData(BudgetPeriod.Day, "2026-12-31T23:59:59.999Z", "d20261231", "2027-01-01T00:00:00Z")]
    [InlineData(BudgetPeriod.Week, "2026-11-21T10:00:00Z", "w2026-47", "2026-11-23T00:00:00Z")]
    [InlineData(BudgetPeriod.Week, "2026-11-23T00:00:00Z", "w2026-48", "2026-11-30T00:00:00Z")]
    [InlineData(BudgetPeriod.Week, "2027-01-01T12:00:00Z", "w2026-53", "2027-01-04T00:00:00Z")]
    [InlineData(BudgetPeriod.Week, "2024-12-30T00:00:00Z", "w2025-01", "2025-01-06T00:00:00Z")]
    [InlineData(BudgetPeriod.Month, "2026-11-30T23:59:59Z", "m202611", "2026-12-01T00:00:00Z")]
    [InlineData(BudgetPeriod.Month, "2026-12-15T00:00:00Z", "m202612", "2027-01-01T00:00:00Z")]
    public void GetKeyAndEnd_UtcCalendar(BudgetPeriod period, string instant, string key, string end)
    {
        var at = DateTimeOffset.Parse(instant, System.Globalization.CultureInfo.InvariantCulture);

        Assert.Equal(key, BudgetPeriods.GetKey(period, at));
        Assert.Equal(DateTimeOffset.Parse(end, System.Globalization.CultureInfo.InvariantCulture), BudgetPeriods.GetEnd(period, at));
    }

    [Fact]
    public void GetKeyAndEnd_Total_NeverEnds()
    {
        Assert.Equal("total", BudgetPeriods.GetKey(BudgetPeriod.Total, DateTimeOffset.UnixEpoch));
        Assert.Null(BudgetPeriods.GetEnd(BudgetPeriod.Total, DateTimeOffset.UnixEpoch));
    }

    [Fact]
    public void GetKey_NonUtcOffset_UsesUtcCalendar() =>
        Assert.Equal("d20261122", BudgetPeriods.GetKey(BudgetPeriod.Day, new DateTimeOffset(2026, 11, 21, 20, 0, 0, TimeSpan.FromHours(-5))));

    [Theory]
    [InlineData(BudgetPeriod.Day)]
    [InlineData(BudgetPeriod.Week)]
    [InlineData(BudgetPeriod.Month)]
    public void GetId_ChangesExactlyWhenKeyDoes(BudgetPeriod period)
    {
        var at = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        for (var hour = 0; hour < 24 * 400; hour += 7)
        {
            var a = at.AddHours(hour);
            var b = a.AddHours(7);
            var sameKey = BudgetPeriods.GetKey(period, a) == BudgetPeriods.GetKey(period, b);
            var sameId = BudgetPeriods.GetId(period, a.ToUnixTimeMilliseconds()) == BudgetPeriods.GetId(period, b.ToUnixTimeMilliseconds());
            Assert.Equal(sameKey, sameId);
        }
    }
}
