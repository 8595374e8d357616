namespace LlmGateway.Runs;

/// <summary>Names and bounds of run outcomes and the per-run call log.</summary>
internal static class RunConstants
{
    /// <summary>The newest calls of one run kept for <c>GET /admin/runs/{id}/calls</c>.</summary>
    public const int CallsPerRun = 256;

    /// <summary>In-memory mode: call entries kept over all runs; past it the least recently active runs lose theirs first.</summary>
    public const int MaxEntriesInMemory = 50_000;

    public const string Success = "success";
    public const string Failure = "failure";
    public const string Abandoned = "abandoned";

    /// <summary>The outcome of a run nobody reported before its idle expiry.</summary>
    public const string Unknown = "unknown";

    public const string KindLlm = "llm";
    public const string KindTool = "tool";

    /// <summary>Outcomes a caller may report.</summary>
    public static bool IsReportable(string outcome) => outcome is Success or Failure or Abandoned;

    /// <summary>How often idle runs are looked for: a quarter of the idle expiry, between 1 s and 1 min.</summary>
    public static TimeSpan SweepPeriod(TimeSpan idleExpiry) =>
        TimeSpan.FromTicks(Math.Clamp(idleExpiry.Ticks / 4, TimeSpan.TicksPerSecond, TimeSpan.TicksPerMinute));
}
