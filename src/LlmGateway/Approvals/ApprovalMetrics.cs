using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;

namespace LlmGateway.Approvals;

/// <summary>
/// <c>llm_gateway_approvals_total{tool,decision}</c> (approved, denied, expired, pending_timeout),
/// <c>llm_gateway_approval_wait_seconds{tool}</c>, <c>llm_gateway_approval_webhooks_total{result}</c> (delivered,
/// failed after every attempt, dropped when the queue was full), and gauges of what is pending now (from <see cref="ApprovalMonitor"/>'s last listing).
/// </summary>
internal sealed class ApprovalMetrics
{
    private static readonly double[] WaitBuckets = [0.1, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 55, 60, 120, 300, 600];

    private readonly Counter<long> _approvals;
    private readonly Histogram<double> _wait;
    private readonly Counter<long> _webhooks;
    private readonly TimeProvider _time;
    private volatile Snapshot _pending = new(new Dictionary<string, int>(), null);

    public ApprovalMetrics(IMeterFactory meterFactory, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        _time = time;
        var meter = meterFactory.Create(GatewayMetrics.MeterName);
        _approvals = meter.CreateCounter<long>("llm_gateway_approvals", "{approval}",
            "Approvals of held tool calls by tool and decision: approved, denied (by a person or a halt), expired (never decided), pending_timeout (a held call answered 409 approval_pending).");
        _wait = meter.CreateHistogram("llm_gateway_approval_wait_seconds", "s",
            "Time a held tool call waited for a decision, by tool.", tags: null, new InstrumentAdvice<double> { HistogramBucketBoundaries = WaitBuckets });
        _webhooks = meter.CreateCounter<long>("llm_gateway_approval_webhooks", "{notice}",
            "Approval webhook notices by result: delivered, failed (every attempt failed), dropped (the queue was full).");
        meter.CreateObservableGauge("llm_gateway_approvals_pending", ObservePending, unit: null,
            "Approvals pending now, by tool (as of the last listing, at most every 15 s).");
        meter.CreateObservableGauge("llm_gateway_approval_oldest_pending_seconds", ObserveOldest, "s",
            "Age of the oldest pending approval; 0 when none is pending.");
    }

    public void RecordDecision(string tool, string decision) =>
        _approvals.Add(1, new KeyValuePair<string, object?>(TelemetryTags.Tool, tool), new KeyValuePair<string, object?>(ApprovalConstants.DecisionTag, decision));

    public void RecordWait(string tool, double seconds) =>
        _wait.Record(seconds, new KeyValuePair<string, object?>(TelemetryTags.Tool, tool));

    /// <summary>One webhook notice's end: <c>delivered</c>, <c>failed</c> or <c>dropped</c>.</summary>
    public void RecordWebhook(string result) =>
        _webhooks.Add(1, new KeyValuePair<string, object?>(TelemetryTags.Result, result));

    /// <summary>What is pending now, from a listing.</summary>
    public void SetPending(IReadOnlyList<ApprovalRecord> pending)
    {
        var byTool = new Dictionary<string, int>(StringComparer.Ordinal);
        DateTimeOffset? oldest = null;
        foreach (var record in pending)
        {
            byTool[record.Request.Tool] = byTool.GetValueOrDefault(record.Request.Tool) + 1;
            if (oldest is null || record.CreatedAt < oldest)
            {
                oldest = record.CreatedAt;
            }
        }

        // Tools that had pending approvals before report 0 rather than vanish, so the series ends at 0.
        foreach (var tool in _pending.ByTool.Keys)
        {
            byTool.TryAdd(tool, 0);
        }

        _pending = new Snapshot(byTool, oldest);
    }

    private IEnumerable<Measurement<int>> ObservePending()
    {
        foreach (var (tool, count) in _pending.ByTool)
        {
            yield return new Measurement<int>(count, new KeyValuePair<string, object?>(TelemetryTags.Tool, tool));
        }
    }

    private double ObserveOldest() =>
        _pending.Oldest is { } oldest ? Math.Max(0, (_time.GetUtcNow() - oldest).TotalSeconds) : 0;

    private sealed record Snapshot(Dictionary<string, int> ByTool, DateTimeOffset? Oldest);
}
