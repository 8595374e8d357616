namespace LlmGateway.Telemetry;

/// <summary>The Prometheus metric types the gateway exposes.</summary>
internal enum PrometheusMetricType
{
    Counter,
    Gauge,
    Histogram,
}

/// <summary>
/// One instrument's series at scrape time, as handed to <see cref="PrometheusTextSerializer"/>.
/// <see cref="Name"/> is the instrument name; the exposed name is derived from it, the unit and the type.
/// </summary>
internal sealed class PrometheusMetric(string name, PrometheusMetricType type, string? unit = null, string? description = null)
{
    private string? _prometheusName;

    public string Name { get; } = name;

    public PrometheusMetricType Type { get; } = type;

    public string? Unit { get; } = unit;

    public string? Description { get; } = description;

    /// <summary>The sanitized family name with unit and <c>_total</c> suffixes, computed once.</summary>
    public string PrometheusName => _prometheusName ??= PrometheusTextSerializer.GetMetricName(Name, Unit, Type);

    public List<PrometheusSample> Samples { get; } = [];

    public PrometheusMetric Add(TagSet labels, double value)
    {
        Samples.Add(new PrometheusSample(labels, value));
        return this;
    }

    /// <param name="bucketCounts">Per-bucket (not cumulative) counts: one per bound, then the overflow bucket.</param>
    public PrometheusMetric AddHistogram(TagSet labels, double[] bounds, long[] bucketCounts, double sum)
    {
        if (bucketCounts.Length != bounds.Length + 1)
        {
            throw new ArgumentException("Expected one count per bound plus one for +Inf.", nameof(bucketCounts));
        }

        Samples.Add(new PrometheusSample(labels, bounds, bucketCounts, sum));
        return this;
    }
}

/// <summary>One series: a value for counters and gauges, buckets and a sum for histograms.</summary>
internal readonly struct PrometheusSample
{
    public PrometheusSample(TagSet labels, double value)
    {
        Labels = labels;
        Value = value;
    }

    public PrometheusSample(TagSet labels, double[] bounds, long[] bucketCounts, double sum)
    {
        Labels = labels;
        Bounds = bounds;
        BucketCounts = bucketCounts;
        Sum = sum;
    }

    public TagSet Labels { get; }

    public double Value { get; }

    public double[]? Bounds { get; }

    public long[]? BucketCounts { get; }

    public double Sum { get; }
}
