using System.Diagnostics;
using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;

namespace LlmGateway.Runs;

/// <summary>
/// Run-level instruments, observed once when a run ends (its outcome reported, or idled out as <c>unknown</c>). Labels
/// are the run's team (from the config) and bounded values; never a run id.
/// </summary>
internal sealed class RunMetrics
{
    // From a fraction of a cent to a runaway agent.
    private static readonly double[] CostBuckets = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 100];

    private static readonly long[] CallBuckets = [1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000];

    // From a single call to a day-long run (the default idle expiry is 24 h).
    private static readonly double[] DurationBuckets = [1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400];

    private readonly Counter<long> _outcomes;
    private readonly Histogram<double> _cost;
    private readonly Histogram<long> _calls;
    private readonly Histogram<double> _duration;
    private readonly Counter<long> _recordsDropped;

    public RunMetrics(Meter meter)
    {
        ArgumentNullException.ThrowIfNull(meter);
        _outcomes = meter.CreateCounter<long>("llm_gateway_run_outcomes", "{run}",
            "Runs ended, by team and outcome (success, failure, abandoned as reported; unknown when a run idled out unreported).");
        _cost = meter.CreateHistogram("llm_gateway_run_cost_usd", "USD",
            "Cost of a run in US dollars (its LLM calls), observed when it ends, by team.", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = CostBuckets });
        _calls = meter.CreateHistogram("llm_gateway_run_calls", "{call}",
            "Calls of a run, observed when it ends, by team and kind (llm, tool).", tags: null,
            new InstrumentAdvice<long> { HistogramBucketBoundaries = CallBuckets });
        _duration = meter.CreateHistogram("llm_gateway_run_duration_seconds", "s",
            "Time from a run's first call to its outcome report (or its last call, when it idled out), by team.", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = DurationBuckets });
        _recordsDropped = meter.CreateCounter<long>("llm_gateway_run_records_dropped", "{call}",
            "Calls not added to their run's calls and totals because the Redis run ledger's write queue was full.");
    }

    /// <summary>Counts calls the Redis run ledger's queue had no room for.</summary>
    public void RecordsDropped(long count) => _recordsDropped.Add(count);

    public void Observe(RunSummary run)
    {
        var team = new KeyValuePair<string, object?>(TelemetryTags.Team, run.Team);
        _outcomes.Add(1, team, new KeyValuePair<string, object?>(TelemetryTags.Outcome, run.Outcome));
        _cost.Record((double)run.CostUsd, team);
        _calls.Record(run.LlmCalls, team, new KeyValuePair<string, object?>(TelemetryTags.Kind, RunConstants.KindLlm));
        _calls.Record(run.ToolCalls, team, new KeyValuePair<string, object?>(TelemetryTags.Kind, RunConstants.KindTool));
        _duration.Record(run.Duration.TotalSeconds, team);
    }
}
