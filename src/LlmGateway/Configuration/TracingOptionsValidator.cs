namespace LlmGateway.Configuration;

/// <summary>Checks Gateway:Tracing; every error names its key path.</summary>
internal static class TracingOptionsValidator
{
    public static void Check(List<string> errors, GatewayOptions options)
    {
        const string path = GatewayOptions.SectionName + ":Tracing";
        var tracing = options.Tracing;
        if (tracing.OtlpEndpoint is { Length: > 0 } endpoint
            && !(Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)))
        {
            errors.Add($"{path}:OtlpEndpoint: '{endpoint}' is not an absolute http(s) URL (e.g. http://jaeger:4318/v1/traces)");
        }

        if (!(tracing.Sampler is >= 0 and <= 1))
        {
            errors.Add($"{path}:Sampler: must be a ratio from 0 to 1 (the share of traces kept)");
        }
    }
}
