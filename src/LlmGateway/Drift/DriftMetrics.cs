using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;

namespace LlmGateway.Drift;

/// <summary>
/// Signals that a provider changed the model behind a name (README, "Drift signals"): the versions it served,
/// why answers stopped, how long they were, and which tools the model asked for. Every label is bounded: versions
/// and tool names to the first <see cref="MaxValuesPerModel"/> per model (later ones count as "other"), finish
/// reasons to the providers' documented values, tool names to those the request declared.
/// </summary>
internal sealed class DriftMetrics
{
    public const int MaxValuesPerModel = 32;
    public const string Other = "other";
    private const int MaxLabelLength = 128;

    // Output lengths from a one-word answer to a long generation.
    private static readonly long[] OutputTokenBuckets =
        [1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768];

    // OpenAI's finish_reason, Anthropic's stop_reason, a Responses answer's status or incomplete reason.
    private static readonly HashSet<string> KnownFinishReasons = new(StringComparer.Ordinal)
    {
        "stop", "length", "tool_calls", "content_filter", "function_call",
        "end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal", "model_context_window_exceeded",
        "completed", "failed", "incomplete", "max_output_tokens",
    };

    private readonly Counter<long> _servedVersions;
    private readonly Counter<long> _finishReasons;
    private readonly Histogram<long> _outputTokens;
    private readonly Counter<long> _toolCallRequests;
    private readonly ConcurrentDictionary<string, BoundedLabels> _versions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, BoundedLabels> _tools = new(StringComparer.Ordinal);

    public DriftMetrics(Meter meter)
    {
        ArgumentNullException.ThrowIfNull(meter);
        _servedVersions = meter.CreateCounter<long>("llm_gateway_served_versions", "{answer}",
            "Upstream answers by the version the provider served: its reported model, with /system_fingerprint when it sent one (first 32 per model, then \"other\").");
        _finishReasons = meter.CreateCounter<long>("llm_gateway_finish_reasons", "{answer}",
            "Upstream answers by why they stopped (finish_reason, stop_reason, Responses status), by model.");
        _outputTokens = meter.CreateHistogram("llm_gateway_output_tokens", "{token}",
            "Output tokens of completed answers, by model.", tags: null,
            new InstrumentAdvice<long> { HistogramBucketBoundaries = OutputTokenBuckets });
        _toolCallRequests = meter.CreateCounter<long>("llm_gateway_tool_call_requests", "{call}",
            "Tool calls the model asked for in its answers, by model and tool (tools the request declared; others \"other\").");
    }

    /// <summary>Records what one upstream answer said; <paramref name="outputTokens"/> is null when the answer did not complete.</summary>
    /// <param name="requestBody">The caller's request, read for its declared tools only when the model asked for some.</param>
    public void RecordAnswer(string model, AnswerSignals answer, long? outputTokens, ReadOnlySpan<byte> requestBody)
    {
        if (answer.Version is { } version)
        {
            RecordServedVersion(model, version);
        }

        if (answer.FinishReason is { } reason)
        {
            RecordFinishReason(model, reason);
        }

        if (outputTokens is { } tokens)
        {
            RecordOutputTokens(model, tokens);
        }

        if (answer.ToolCalls is { } calls)
        {
            var declared = DeclaredTools.Read(requestBody);
            foreach (var tool in calls)
            {
                RecordToolCallRequest(model, tool, declared);
            }
        }
    }

    public void RecordServedVersion(string model, string version) =>
        _servedVersions.Add(1, new TagList
        {
            { TelemetryTags.Model, model },
            { TelemetryTags.Version, Bound(_versions, model, version) },
        });

    public void RecordFinishReason(string model, string reason) =>
        _finishReasons.Add(1, new TagList
        {
            { TelemetryTags.Model, model },
            { TelemetryTags.Reason, FinishReasonLabel(reason) },
        });

    public void RecordOutputTokens(string model, long tokens) =>
        _outputTokens.Record(tokens, new KeyValuePair<string, object?>(TelemetryTags.Model, model));

    /// <param name="declared">The tools the request declared: only their names become labels.</param>
    public void RecordToolCallRequest(string model, string tool, HashSet<string> declared) =>
        _toolCallRequests.Add(1, new TagList
        {
            { TelemetryTags.Model, model },
            { TelemetryTags.Tool, declared.Contains(tool) ? Bound(_tools, model, tool) : Other },
        });

    internal static string FinishReasonLabel(string reason) => KnownFinishReasons.TryGetValue(reason, out var known) ? known : Other;

    /// <summary>The label for <paramref name="value"/>: itself while the model has fewer than 32 values, else "other".</summary>
    internal string BoundVersion(string model, string value) => Bound(_versions, model, value);

    private static string Bound(ConcurrentDictionary<string, BoundedLabels> labels, string model, string value)
    {
        if (value.Length > MaxLabelLength)
        {
            value = value[..MaxLabelLength];
        }

        return labels.GetOrAdd(model, static _ => new BoundedLabels()).Label(value);
    }

    /// <summary>The first <see cref="MaxValuesPerModel"/> distinct values one model's label took.</summary>
    private sealed class BoundedLabels
    {
        private readonly Lock _lock = new();
        private readonly HashSet<string> _values = new(StringComparer.Ordinal);

        public string Label(string value)
        {
            lock (_lock)
            {
                if (_values.TryGetValue(value, out var known))
                {
                    return known;
                }

                if (_values.Count < MaxValuesPerModel)
                {
                    _values.Add(value);
                    return value;
                }

                return Other;
            }
        }
    }
}
