namespace LlmGateway.Configuration;

/// <summary>OpenTelemetry traces of LLM and tool calls (ActivitySource "LlmGateway"); off unless OtlpEndpoint is set. Read at start-up.</summary>
public sealed record TracingOptions
{
    /// <summary>The collector's traces URL, e.g. http://jaeger:4318/v1/traces (OTLP over HTTP/protobuf); empty = no traces.</summary>
    public string? OtlpEndpoint { get; init; }

    /// <summary>Headers sent with every export (e.g. a managed collector's API key); never logged.</summary>
    public Dictionary<string, string> OtlpHeaders { get; init; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Share of traces kept, 0 to 1 (default 1). A caller's sampled flag is followed; a run is kept or dropped whole.</summary>
    public double Sampler { get; init; } = 1.0;

    /// <summary>Also record request and answer bodies (prompts, completions) as span attributes. Default false: they may hold personal data.</summary>
    public bool CaptureContent { get; init; }
}
