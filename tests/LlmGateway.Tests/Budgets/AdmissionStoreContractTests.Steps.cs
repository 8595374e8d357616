using LlmGateway.Budgets;
using LlmGateway.Tests.Shared;

namespace LlmGateway.Tests.Budgets;

/// <summary>The run step every admission gets (issue 17: the call log's Step), for every store.</summary>
public abstract partial class AdmissionStoreContractTests
{
    [StoreFact]
    public async Task Step_CountsTheRunsAdmissions_ThroughSettles_Releases_Halts_AndRefusals()
    {
        var run = Request() with { RunId = "run-1", RunBudget = new BudgetLimits(0, 0, 4) };
        var first = await AdmitAsync(run);
        var second = await AdmitAsync(run);
        Assert.Equal(1, first.Step);
        Assert.Equal(2, second.Step);

        // No run, no step; the run's counter does not move.
        Assert.Equal(0, (await AdmitAsync(Request())).Step);

        // Settling and releasing write the run's state again: the counter survives both, as it does a halt and resume.
        await SettleAsync(first, 0.01m, 10);
        await Store.ReleaseAsync(second);
        await Store.HaltRunAsync("run-1");
        await Store.ResumeRunAsync("run-1");
        var third = await AdmitAsync(run);
        Assert.Equal(3, third.Step);
        await SettleAsync(third, 0.01m, 10);

        // A refused call takes no step (the calls limit of 4: two settled, two more fit, then a refusal).
        await SettleAsync(await AdmitAsync(run), 0.01m, 10);
        await SettleAsync(await AdmitAsync(run), 0.01m, 10);
        var refused = await Store.ReserveAsync(run);
        Assert.False(refused.IsAdmitted);
        Assert.Null(refused.Reservation);
        Assert.Equal(6, (await AdmitAsync(run with { RunBudget = default })).Step);
    }

    [StoreFact]
    public async Task Step_RunIdlePastItsExpiry_StartsAgainAtOne()
    {
        var run = Request() with { RunId = "run-1" };
        await SettleAsync(await AdmitAsync(run), 0.01m, 10);
        await SettleAsync(await AdmitAsync(run), 0.01m, 10);

        Time.Advance(Options.RunIdleExpiry);

        Assert.Equal(1, (await AdmitAsync(run)).Step);
    }
}
