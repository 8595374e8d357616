using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;

namespace LlmGateway.Tools;

/// <summary><c>llm_gateway_tool_run_cache_total{tool,result}</c>: reads of a tool with a run cache, answered from it (<c>hit</c>) or by the tool (<c>miss</c>).</summary>
internal sealed class ToolRunCacheMetrics
{
    public const string Hit = "hit";
    public const string Miss = "miss";

    private readonly Counter<long> _lookups;

    public ToolRunCacheMetrics(IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        var meter = meterFactory.Create(GatewayMetrics.MeterName);
        _lookups = meter.CreateCounter<long>("llm_gateway_tool_run_cache", "{read}",
            "Tool reads of a run with a run cache, by tool and result: hit (answered within the run, no call to the tool) or miss.");
    }

    public void Record(string tool, string result) =>
        _lookups.Add(1, new KeyValuePair<string, object?>(TelemetryTags.Tool, tool), new KeyValuePair<string, object?>(TelemetryTags.Result, result));
}
