using System.Runtime.CompilerServices;

namespace LlmGateway.Telemetry;

/// <summary>The aggregated state of one series; recording is lock-free.</summary>
internal abstract class MetricSeries
{
    /// <summary>For observable instruments: the scrape that last reported this series.</summary>
    public int ObservedGeneration;

    /// <summary>The tag set this series is keyed by; set once, before the series is published.</summary>
    public TagSet Labels = TagSet.Empty;

    public abstract void Record(long value);

    public abstract void Record(double value);

    public abstract void AddSampleTo(PrometheusMetric metric, TagSet labels);

    protected static void AddDouble(ref double location, double value)
    {
        var current = Volatile.Read(ref location);
        while (true)
        {
            var seen = Interlocked.CompareExchange(ref location, current + value, current);

            // Compare bits, not values: NaN != NaN would otherwise spin forever.
            if (BitConverter.DoubleToInt64Bits(seen) == BitConverter.DoubleToInt64Bits(current))
            {
                return;
            }

            current = seen;
        }
    }
}

/// <summary>A monotonic (or up-down) sum of integer measurements.</summary>
internal sealed class LongSumSeries : MetricSeries
{
    private long _value;

    public override void Record(long value) => Interlocked.Add(ref _value, value);

    public override void Record(double value) => Interlocked.Add(ref _value, (long)value);

    public override void AddSampleTo(PrometheusMetric metric, TagSet labels) =>
        metric.Add(labels, Interlocked.Read(ref _value));
}

/// <summary>A monotonic (or up-down) sum of floating-point measurements.</summary>
internal sealed class DoubleSumSeries : MetricSeries
{
    private double _value;

    public override void Record(long value) => AddDouble(ref _value, value);

    public override void Record(double value) => AddDouble(ref _value, value);

    public override void AddSampleTo(PrometheusMetric metric, TagSet labels) =>
        metric.Add(labels, Volatile.Read(ref _value));
}

/// <summary>The last value seen: gauges, and observable instruments (which report cumulative values).</summary>
internal sealed class LastValueSeries : MetricSeries
{
    private double _value;

    public override void Record(long value) => Volatile.Write(ref _value, value);

    public override void Record(double value) => Volatile.Write(ref _value, value);

    public override void AddSampleTo(PrometheusMetric metric, TagSet labels) =>
        metric.Add(labels, Volatile.Read(ref _value));
}

/// <summary>Explicit-bucket histogram; the count is the sum of the buckets, so +Inf always equals _count.</summary>
internal sealed class HistogramSeries(double[] bounds) : MetricSeries
{
    private readonly long[] _counts = new long[bounds.Length + 1];
    private double _sum;

    public override void Record(long value) => Record((double)value);

    public override void Record(double value)
    {
        Interlocked.Increment(ref _counts[BucketIndex(bounds, value)]);
        AddDouble(ref _sum, value);
    }

    public override void AddSampleTo(PrometheusMetric metric, TagSet labels)
    {
        var counts = new long[_counts.Length];
        for (var i = 0; i < counts.Length; i++)
        {
            counts[i] = Interlocked.Read(ref _counts[i]);
        }

        metric.AddHistogram(labels, bounds, counts, Volatile.Read(ref _sum));
    }

    // Prometheus buckets are "less than or equal": a value equal to a bound belongs to that bound's bucket.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int BucketIndex(double[] bounds, double value)
    {
        if (double.IsNaN(value))
        {
            return bounds.Length;
        }

        var index = bounds.AsSpan().BinarySearch(value);
        return index >= 0 ? index : ~index;
    }
}
