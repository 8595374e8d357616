namespace LlmGateway.Telemetry;

/// <summary>The Prometheus kind an instrument is exposed as.</summary>
internal enum PrometheusKind
{
    Counter,
    Gauge,
    Histogram,
}

/// <summary>
/// Prometheus names for System.Diagnostics.Metrics instruments and tags, following OpenTelemetry's Prometheus
/// exporter (and what /metrics has always served): any character outside [a-zA-Z0-9_] becomes '_', the units
/// "s" and "By" append <c>_seconds</c> / <c>_bytes</c>, counters append <c>_total</c>, each only when not already
/// there. prometheus-net's own MeterAdapter names differently (meter name as a prefix, counters as gauges without
/// <c>_total</c>, no unit suffix), which would rename every series the dashboard and the alerts query.
/// </summary>
internal static class PrometheusNames
{
    private const string Total = "_total";

    private static readonly System.Buffers.SearchValues<char> ValidChars =
        System.Buffers.SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");

    /// <summary>The exposed family name of an instrument.</summary>
    public static string MetricName(string name, string? unit, PrometheusKind kind)
    {
        var sanitized = Sanitize(name);
        var isCounter = kind == PrometheusKind.Counter;
        if (isCounter && sanitized.EndsWith(Total, StringComparison.Ordinal) && sanitized.Length > Total.Length)
        {
            sanitized = sanitized[..^Total.Length];
        }

        var unitSuffix = unit switch
        {
            "s" => "_seconds",
            "By" => "_bytes",
            _ => null,
        };

        if (unitSuffix is not null && !sanitized.EndsWith(unitSuffix, StringComparison.Ordinal))
        {
            sanitized += unitSuffix;
        }

        if (isCounter)
        {
            return sanitized + Total;
        }

        // _count, _sum and _bucket belong to histogram series; a gauge such as System.Runtime's dotnet.assembly.count
        // would read as part of a histogram, which promtool's lint rejects.
        if (kind == PrometheusKind.Gauge
            && (sanitized.EndsWith("_count", StringComparison.Ordinal)
                || sanitized.EndsWith("_sum", StringComparison.Ordinal)
                || sanitized.EndsWith("_bucket", StringComparison.Ordinal)))
        {
            return sanitized + "_current";
        }

        return sanitized;
    }

    /// <summary>A tag's label name, or null when it cannot be one (Prometheus reserves names starting with "__").</summary>
    public static string? LabelName(string tag)
    {
        var sanitized = Sanitize(tag);
        return sanitized.StartsWith("__", StringComparison.Ordinal) ? null : sanitized;
    }

    /// <summary>Maps a name onto [a-zA-Z_][a-zA-Z0-9_]*; a leading digit gets a '_' in front.</summary>
    public static string Sanitize(string name)
    {
        if (name.Length == 0)
        {
            return "_";
        }

        var needsPrefix = char.IsAsciiDigit(name[0]);
        if (!needsPrefix && !name.AsSpan().ContainsAnyExcept(ValidChars))
        {
            return name;
        }

        return string.Create(name.Length + (needsPrefix ? 1 : 0), (name, needsPrefix), static (span, state) =>
        {
            var offset = 0;
            if (state.needsPrefix)
            {
                span[0] = '_';
                offset = 1;
            }

            for (var i = 0; i < state.name.Length; i++)
            {
                var c = state.name[i];
                span[i + offset] = ValidChars.Contains(c) ? c : '_';
            }
        });
    }
}
