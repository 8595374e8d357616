namespace LlmGateway.MockLlm;

/// <summary>One request as the mock LLM received it, recorded before any injected latency or failure.</summary>
/// <param name="Sequence">Arrival order, starting at 1; it keeps counting across <see cref="MockRequestLog.Clear"/>.</param>
/// <param name="ReceivedAt">Arrival time, precise to the stopwatch so intervals between records can be measured.</param>
/// <param name="Method">The HTTP method.</param>
/// <param name="Path">The request path as received, including any path base and map prefix.</param>
/// <param name="Model">The body's <c>model</c>, when the body is a JSON object carrying one.</param>
/// <param name="Body">The body as UTF-8 text.</param>
/// <param name="Headers">Every request header (case-insensitive names), multiple values joined with ",".</param>
/// <param name="Stream">Whether the body asked for <c>"stream": true</c>.</param>
public sealed record MockRequestRecord(
    long Sequence,
    DateTimeOffset ReceivedAt,
    string Method,
    string Path,
    string? Model,
    string Body,
    IReadOnlyDictionary<string, string> Headers,
    bool Stream);
