using System.Text.Json;
using System.Text.Json.Serialization;

namespace LlmGateway.Runs;

/// <summary>
/// One call of a run as <c>GET /admin/runs/{id}/calls</c> lists it: the fields of the call log (LlmCall / ToolCall
/// records), never a key, a prompt, a completion or a query string.
/// </summary>
internal sealed record RunCallEntry
{
    /// <summary>The call's 1-based index in its run; null when the admission store did not answer.</summary>
    public long? Step { get; init; }

    /// <summary><c>llm</c> or <c>tool</c>.</summary>
    public required string Kind { get; init; }

    public required string RequestId { get; init; }

    /// <summary>When the call ended (UTC).</summary>
    public DateTimeOffset Time { get; init; }

    public string? User { get; init; }

    public string? KeyId { get; init; }

    public string? Model { get; init; }

    public string? ServedModel { get; init; }

    public string? Tool { get; init; }

    public string? Method { get; init; }

    /// <summary>A tool call's path below /tools/{tool}, without the query.</summary>
    public string? Path { get; init; }

    public int Status { get; init; }

    public string? Outcome { get; init; }

    public long? InputTokens { get; init; }

    public long? CachedInputTokens { get; init; }

    public long? OutputTokens { get; init; }

    public decimal? CostUsd { get; init; }

    public double DurationMs { get; init; }

    public int? Attempts { get; init; }

    public string? FinishReason { get; init; }

    public string? ServedVersion { get; init; }

    public IReadOnlyList<string>? ToolCalls { get; init; }

    public string? TraceId { get; init; }

    /// <summary>snake_case, nulls left out: the shape of the admin API and of the entries stored in Redis.</summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Step order; calls without a step (store unavailable) after, by time.</summary>
    public static int Compare(RunCallEntry a, RunCallEntry b) => (a.Step, b.Step) switch
    {
        ({ } x, { } y) when x != y => x.CompareTo(y),
        (null, not null) => 1,
        (not null, null) => -1,
        _ => a.Time.CompareTo(b.Time),
    };
}
