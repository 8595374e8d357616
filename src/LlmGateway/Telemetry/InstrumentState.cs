using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;

namespace LlmGateway.Telemetry;

/// <summary>How one instrument's measurements are aggregated.</summary>
internal enum AggregationKind
{
    LongSum,
    DoubleSum,
    LastValue,
    Histogram,
}

/// <summary>
/// The series of one instrument, keyed by tag set. Looking up an existing series sorts the tags on the stack
/// and probes the dictionary with them directly, so recording allocates nothing. The two series recorded last
/// are tried first: most measurements of an instrument repeat the tags of a recent one (the same route, upstream,
/// caller; a connection's idle and active states take turns), and comparing with them skips hashing every tag value.
/// </summary>
internal sealed class InstrumentState
{
    private readonly ConcurrentDictionary<TagSet, MetricSeries> _series;
    private readonly ConcurrentDictionary<TagSet, MetricSeries>.AlternateLookup<SortedTags> _lookup;
    private readonly AggregationKind _aggregation;
    private readonly double[] _bounds;
    private readonly int _maxSeries;
    private readonly Action _onDropped;
    private readonly PrometheusMetric _metric;
    private int _seriesCount;
    private volatile int _generation;

    // Only for instruments that are not observable: Collect never removes their series, so recent ones stay live.
    private MetricSeries? _last;
    private MetricSeries? _previous;

    public InstrumentState(
        Instrument instrument,
        PrometheusMetricType type,
        AggregationKind aggregation,
        double[]? bounds,
        int maxSeries,
        Action onDropped)
    {
        Instrument = instrument;
        IsObservable = instrument.IsObservable;
        _aggregation = aggregation;
        _bounds = bounds ?? [];
        _maxSeries = maxSeries;
        _onDropped = onDropped;
        _metric = new PrometheusMetric(instrument.Name, type, instrument.Unit, instrument.Description);
        _series = new ConcurrentDictionary<TagSet, MetricSeries>(TagSetComparer.Instance);
        _lookup = _series.GetAlternateLookup<SortedTags>();
    }

    public Instrument Instrument { get; }

    public bool IsObservable { get; }

    public int SeriesCount => Volatile.Read(ref _seriesCount);

    public void Record(long value, ReadOnlySpan<KeyValuePair<string, object?>> tags) => GetSeries(tags)?.Record(value);

    public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags) => GetSeries(tags)?.Record(value);

    /// <summary>Starts an observation round: series not reported again before <see cref="Collect"/> are stale.</summary>
    public void BeginObservation() => _generation++;

    /// <summary>Fills and returns this instrument's metric; the instance is reused, so call under the scrape lock.</summary>
    public PrometheusMetric Collect()
    {
        var metric = _metric;
        metric.Samples.Clear();
        var generation = _generation;
        foreach (var (labels, series) in _series)
        {
            // An observable instrument that stopped reporting a tag set (an old config version, a removed
            // upstream) must stop exposing it, and must not keep holding a slot under the series cap.
            if (IsObservable && series.ObservedGeneration != generation)
            {
                if (_series.TryRemove(labels, out _))
                {
                    Interlocked.Decrement(ref _seriesCount);
                }

                continue;
            }

            series.AddSampleTo(metric, labels);
        }

        return metric;
    }

    private MetricSeries? GetSeries(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        TagBuffer buffer = default;
        KeyValuePair<string, object?>[]? rented = null;
        Span<KeyValuePair<string, object?>> sorted = buffer;
        if (tags.Length <= TagBuffer.Length)
        {
            sorted = sorted[..tags.Length];
        }
        else
        {
            rented = ArrayPool<KeyValuePair<string, object?>>.Shared.Rent(tags.Length);
            sorted = rented.AsSpan(0, tags.Length);
        }

        tags.CopyTo(sorted);
        TagSet.Sort(sorted);
        var key = new SortedTags(sorted);
        MetricSeries? series;
        if (IsObservable)
        {
            series = Find(key);
        }
        else if (Volatile.Read(ref _last) is { } last && TagSetComparer.Instance.Equals(key, last.Labels))
        {
            series = last;
        }
        else if (Volatile.Read(ref _previous) is { } previous && TagSetComparer.Instance.Equals(key, previous.Labels))
        {
            series = previous;
        }
        else
        {
            series = Find(key);
            if (series is not null)
            {
                Volatile.Write(ref _previous, Volatile.Read(ref _last));
                Volatile.Write(ref _last, series);
            }
        }

        if (rented is not null)
        {
            ArrayPool<KeyValuePair<string, object?>>.Shared.Return(rented, clearArray: true);
        }

        if (series is not null && IsObservable)
        {
            series.ObservedGeneration = _generation;
        }

        return series;
    }

    private MetricSeries? Find(SortedTags key) => _lookup.TryGetValue(key, out var series) ? series : AddSeries(key);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private MetricSeries? AddSeries(SortedTags key)
    {
        if (Interlocked.Increment(ref _seriesCount) > _maxSeries)
        {
            Interlocked.Decrement(ref _seriesCount);
            _onDropped();
            return null;
        }

        MetricSeries created = _aggregation switch
        {
            AggregationKind.LongSum => new LongSumSeries(),
            AggregationKind.DoubleSum => new DoubleSumSeries(),
            AggregationKind.LastValue => new LastValueSeries(),
            _ => new HistogramSeries(_bounds),
        };

        var labels = TagSet.FromSorted(key.Tags);
        created.Labels = labels;
        if (_series.TryAdd(labels, created))
        {
            return created;
        }

        // Another thread added the same tag set first.
        Interlocked.Decrement(ref _seriesCount);
        return _lookup.TryGetValue(key, out var existing) ? existing : null;
    }
}
