using LlmGateway.Resilience;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Resilience;

public sealed class RunRetryBudgetsTests
{
    private readonly FakeTimeProvider _time = new();

    [Fact]
    public void Flood_OfNewRunIds_StaysWithinMaxRuns()
    {
        var budgets = new RunRetryBudgets(_time, maxRuns: 100);
        for (var i = 0; i < 10_000; i++)
        {
            Assert.True(budgets.TryTake("run-" + i, 2));
            _time.Advance(TimeSpan.FromMilliseconds(1));
        }

        Assert.InRange(budgets.Count, 1, 100);
    }

    [Fact]
    public void Full_TheRunsLeastRecentlyRetriedGoFirst_ARetryingRunKeepsItsCount()
    {
        var budgets = new RunRetryBudgets(_time, maxRuns: 100);
        Assert.True(budgets.TryTake("looping", 2));
        Assert.True(budgets.TryTake("looping", 2));
        for (var i = 0; i < 1_000; i++)
        {
            _time.Advance(TimeSpan.FromMilliseconds(1));
            budgets.TryTake("other-" + i, 2);
            if (i % 50 == 0)
            {
                Assert.False(budgets.TryTake("looping", 2)); // still spent: it was used recently, so never evicted
            }
        }
    }

    [Fact]
    public void MaxRetriesPerRun_IsEnforced()
    {
        var budgets = new RunRetryBudgets(_time);

        Assert.True(budgets.TryTake("r", 3));
        Assert.True(budgets.TryTake("r", 3));
        Assert.True(budgets.TryTake("r", 3));
        Assert.False(budgets.TryTake("r", 3));
    }
}
