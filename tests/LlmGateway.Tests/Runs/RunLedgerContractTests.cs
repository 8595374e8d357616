using LlmGateway.Runs;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Runs;

/// <summary>
/// What every <see cref="IRunLedger"/> must do (<see cref="InMemoryRunLedgerTests"/>, <see cref="RedisRunLedgerTests"/>):
/// list a run's calls in step order, end a run once, end idle runs as unknown once. Time is a <see cref="FakeTimeProvider"/>.
/// </summary>
public abstract class RunLedgerContractTests : IDisposable
{
    protected static readonly TimeSpan Idle = TimeSpan.FromMinutes(30);

    private readonly List<IDisposable> _owned = [];
    private IRunLedger? _ledger;

    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 12, 3, 10, 0, 0, TimeSpan.Zero));

    internal IRunLedger Ledger => _ledger ??= NewLedger();

    public void Dispose()
    {
        // Newest first: a ledger flushes its queue on dispose, before its connection goes.
        foreach (var owned in Enumerable.Reverse(_owned))
        {
            owned.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    [StoreFact]
    public async Task Record_ThenList_InStepOrder_WithTheCallLogFields()
    {
        Record("run-1", Entry(3, RunConstants.KindTool));
        Record("run-1", Entry(1, RunConstants.KindLlm, 0.02m));
        Record("run-1", Entry(2, RunConstants.KindLlm, 0.03m));
        Record("run-2", Entry(1, RunConstants.KindLlm));

        var calls = await CallsAsync("run-1", 3);

        Assert.Equal([1L, 2L, 3L], calls.Select(c => c.Step!.Value));
        Assert.Equal(["req-1", "req-2", "req-3"], calls.Select(c => c.RequestId));
        Assert.Equal(0.02m, calls[0].CostUsd);
        Assert.Equal(RunConstants.KindTool, calls[2].Kind);
        Assert.Null(await Ledger.GetCallsAsync("run-unknown", default));
    }

    [StoreFact]
    public async Task End_Once_ThenAlreadyEnded_OtherUserRefused_UnknownRunNotFound()
    {
        Record("run-1", Entry(1, RunConstants.KindLlm, 0.25m));
        Record("run-1", Entry(2, RunConstants.KindTool));
        Record("run-1", Entry(3, RunConstants.KindLlm, 0.5m));
        await CallsAsync("run-1", 3);
        Time.Advance(TimeSpan.FromSeconds(90));

        var other = await Ledger.EndAsync("run-1", "mallory", RunConstants.Success, default);
        var ended = await Ledger.EndAsync("run-1", "alice", RunConstants.Failure, default);
        var again = await NewLedger().EndAsync("run-1", "alice", RunConstants.Success, default);
        var unknown = await Ledger.EndAsync("run-never", "alice", RunConstants.Success, default);

        Assert.Equal(RunEndStatus.OtherUser, other.Status);
        Assert.Equal(RunEndStatus.Ended, ended.Status);
        Assert.Equal(new RunSummary("run-1", "alice", "research", RunConstants.Failure, 2, 1, 0.75m, TimeSpan.FromSeconds(90)), ended.Summary);
        Assert.Equal(RunEndStatus.AlreadyEnded, again.Status);
        Assert.Equal(RunConstants.Failure, again.Outcome);
        Assert.Equal(RunEndStatus.UnknownRun, unknown.Status);

        // An ended run is never swept as unknown.
        Time.Advance(Idle);
        Assert.Empty(await Ledger.EndIdleAsync(default));
    }

    [StoreFact]
    public async Task IdleRun_EndsUnknown_Once_AtItsLastCall()
    {
        Record("run-1", Entry(1, RunConstants.KindLlm, 0.1m));
        await CallsAsync("run-1", 1);
        Time.Advance(TimeSpan.FromMinutes(5));
        Record("run-1", Entry(2, RunConstants.KindLlm, 0.1m));
        await CallsAsync("run-1", 2);
        Time.Advance(TimeSpan.FromMinutes(1));
        Record("run-busy", Entry(1, RunConstants.KindLlm));
        await CallsAsync("run-busy", 1);

        Time.Advance(Idle - TimeSpan.FromMinutes(1) - TimeSpan.FromSeconds(1));
        Assert.Empty(await Ledger.EndIdleAsync(default));
        Time.Advance(TimeSpan.FromSeconds(1));
        var second = NewLedger();
        var ended = await Ledger.EndIdleAsync(default);
        var again = await second.EndIdleAsync(default);

        var run = Assert.Single(ended.Concat(again));
        Assert.Equal(new RunSummary("run-1", "alice", "research", RunConstants.Unknown, 2, 0, 0.2m, TimeSpan.FromMinutes(5)), run);

        // Reporting after the idle expiry: the run is gone for its caller.
        Assert.Equal(RunEndStatus.UnknownRun, (await Ledger.EndAsync("run-1", "alice", RunConstants.Success, default)).Status);
    }

    [StoreFact]
    public async Task Ring_KeepsTheNewestCallsOfARun()
    {
        // The ring keeps the newest calls recorded. Redis records are sent without waiting: once the connection is up
        // and the script loaded they arrive in the order sent, before that in any order (a run's calls are sequential).
        Record("run-long", Entry(1, RunConstants.KindLlm));
        await CallsAsync("run-long", 1);
        for (var step = 2; step <= RunConstants.CallsPerRun + 10; step++)
        {
            Record("run-long", Entry(step, RunConstants.KindLlm));
        }

        var calls = await CallsAsync("run-long", RunConstants.CallsPerRun, lastStep: RunConstants.CallsPerRun + 10);

        Assert.Equal(RunConstants.CallsPerRun, calls.Count);
        Assert.Equal(11, calls[0].Step);
    }

    internal abstract IRunLedger CreateLedger();

    /// <summary>What the ledgers logged, for a failure message.</summary>
    protected virtual string Diagnostics => string.Empty;

    /// <summary>Another ledger on the same backing state (Redis: a second replica), or a fresh one (memory).</summary>
    internal IRunLedger NewLedger()
    {
        var ledger = CreateLedger();
        if (ledger is IDisposable disposable)
        {
            _owned.Add(disposable);
        }

        return ledger;
    }

    protected void Own(IDisposable disposable) => _owned.Add(disposable);

    private void Record(string runId, RunCallEntry entry) => Ledger.Record(runId, "alice", "research", entry);

    /// <summary>The run's calls once <paramref name="count"/> are there (Redis records are written without waiting).</summary>
    private async Task<IReadOnlyList<RunCallEntry>> CallsAsync(string runId, int count, long? lastStep = null)
    {
        for (var i = 0; ; i++)
        {
            var calls = await Ledger.GetCallsAsync(runId, default);
            if (calls is not null && calls.Count == count && (lastStep is null || calls[^1].Step == lastStep))
            {
                return calls;
            }

            Assert.True(i < 500, $"run {runId}: {calls?.Count} calls, expected {count}: steps {string.Join(",", calls?.Select(c => c.Step) ?? [])} {Diagnostics}");
            await Task.Delay(10);
        }
    }

    private RunCallEntry Entry(long step, string kind, decimal cost = 0) => new()
    {
        Step = step,
        Kind = kind,
        RequestId = "req-" + step,
        Time = Time.GetUtcNow(),
        User = "alice",
        Status = 200,
        CostUsd = kind == RunConstants.KindLlm ? cost : null,
    };
}
