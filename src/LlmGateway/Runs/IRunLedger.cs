namespace LlmGateway.Runs;

/// <summary>
/// Per-run totals and the ring of a run's latest calls (<see cref="RunConstants.CallsPerRun"/>), kept for the run's
/// idle expiry: in memory (<see cref="InMemoryRunLedger"/>) or in Redis, in the run's hash slot, shared by every
/// replica (<see cref="RedisRunLedger"/>). A run ends once: by its outcome report or by idling out.
/// </summary>
internal interface IRunLedger
{
    /// <summary>Adds an admitted call to its run. Never throws and never makes the call wait for Redis (failures are logged).</summary>
    void Record(string runId, string user, string? team, RunCallEntry entry);

    /// <summary>The run's kept calls in step order; null when the run is unknown.</summary>
    ValueTask<IReadOnlyList<RunCallEntry>?> GetCallsAsync(string runId, CancellationToken cancellationToken);

    /// <summary>Ends the run with <paramref name="outcome"/> when it has not ended yet (atomically, across replicas).</summary>
    ValueTask<RunEnding> EndAsync(string runId, string user, string outcome, CancellationToken cancellationToken);

    /// <summary>Ends the runs idle for their expiry with outcome <c>unknown</c>; each is returned by one call on one replica only.</summary>
    ValueTask<IReadOnlyList<RunSummary>> EndIdleAsync(CancellationToken cancellationToken);
}
