using LlmGateway.Runs;

namespace LlmGateway.Tests.Runs;

public sealed class InMemoryRunLedgerTests : RunLedgerContractTests
{
    [Fact]
    public void Memory_IsBounded_InEntriesOverAllRuns_AndInRuns()
    {
        var ledger = new InMemoryRunLedger(Idle, maxRuns: 50, Time, maxEntries: 1_000);
        for (var run = 0; run < 200; run++)
        {
            for (var step = 1; step <= 30; step++)
            {
                ledger.Record("run-" + run, "alice", null, new RunCallEntry { Step = step, Kind = RunConstants.KindLlm, RequestId = "r" });
            }
        }

        Assert.Equal(50, ledger.Runs);
        Assert.True(ledger.Entries <= 1_000, $"{ledger.Entries} entries");
    }

    private InMemoryRunLedger? _shared;

    /// <summary>A process has one in-memory ledger: "another replica" is the same one.</summary>
    internal override IRunLedger CreateLedger() => _shared ??= new InMemoryRunLedger(Idle, 1_000, Time);
}
