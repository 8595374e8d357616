namespace LlmGateway.Runs;

/// <summary>What is observed once when a run ends: its totals and how it ended.</summary>
/// <param name="Team">The team of the run's first caller; empty when it has none.</param>
/// <param name="Duration">From the run's first call to its outcome report, or to its last call when it idled out.</param>
internal sealed record RunSummary(string RunId, string User, string Team, string Outcome, long LlmCalls, long ToolCalls, decimal CostUsd, TimeSpan Duration);

/// <summary>How a request to end a run went.</summary>
internal enum RunEndStatus
{
    /// <summary>No call of this run is known (never seen, or forgotten after its idle expiry).</summary>
    UnknownRun,

    /// <summary>This request ended the run: its summary is to be observed, once.</summary>
    Ended,

    /// <summary>The run had already ended (reported, or idled out); nothing is observed again.</summary>
    AlreadyEnded,

    /// <summary>The run belongs to another user.</summary>
    OtherUser,
}

/// <summary>The answer to <see cref="IRunLedger.EndAsync"/>.</summary>
/// <param name="Outcome">The run's outcome: the one just set, or the one it ended with earlier.</param>
internal readonly record struct RunEnding(RunEndStatus Status, string? Outcome, RunSummary? Summary);
