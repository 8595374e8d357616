using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Prometheus;

namespace LlmGateway.Telemetry;

/// <summary>How an instrument's measurements change its Prometheus series.</summary>
internal enum BridgeAggregation
{
    /// <summary>Counter: a measurement is an increment.</summary>
    Add,

    /// <summary>ObservableCounter: a measurement is the cumulative total.</summary>
    AddUpTo,

    /// <summary>UpDownCounter: a measurement is an increment of a gauge.</summary>
    GaugeAdd,

    /// <summary>Gauge and observable gauges: a measurement is the current value.</summary>
    GaugeSet,

    /// <summary>Histogram: a measurement is one observation.</summary>
    Observe,
}

/// <summary>
/// Feeds one System.Diagnostics.Metrics instrument into prometheus-net. Tags become labels sorted by name; each
/// distinct ordering of tag keys the instrument is recorded with is resolved once into a layout. The series of a
/// label set are indexed here by their values so that recording on an existing series takes no lock and allocates
/// nothing, and so that new series beyond the cap are dropped (prometheus-net has no cap).
/// </summary>
internal sealed class InstrumentBridge
{
    private static readonly string[] SmallIntegers = CreateSmallIntegers();

    private readonly IMetricFactory _factory;
    private readonly string _name;
    private readonly string _help;
    private readonly PrometheusKind _kind;
    private readonly BridgeAggregation _aggregation;
    private readonly double[]? _buckets;
    private readonly int _maxSeries;
    private readonly Action _onDropped;
    private readonly Lock _layoutsLock = new();
    private readonly List<LabelSet> _labelSets = [];
    private volatile TagLayout[] _layouts = [];
    private int _seriesCount;
    private int _generation;

    public InstrumentBridge(Instrument instrument, IMetricFactory factory, PrometheusKind kind, BridgeAggregation aggregation,
        double[]? buckets, int maxSeries, Action onDropped)
    {
        _factory = factory;
        _kind = kind;
        _aggregation = aggregation;
        _buckets = buckets;
        _maxSeries = maxSeries;
        _onDropped = onDropped;
        _name = PrometheusNames.MetricName(instrument.Name, instrument.Unit, kind);
        _help = string.IsNullOrEmpty(instrument.Description) ? instrument.Name : instrument.Description;
        IsObservable = instrument.IsObservable;
    }

    public bool IsObservable { get; }

    public int SeriesCount => Volatile.Read(ref _seriesCount);

    public void Record(double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var layout = FindLayout(tags) ?? AddLayout(tags);
        if (layout.Labels is not { } labels)
        {
            // The name clashed with another metric of a different type or label names: prometheus-net refused it.
            _onDropped();
            return;
        }

        var indexes = layout.Indexes;
        LabelValueBuffer buffer = default;
        string[]? rented = null;
        Span<string> values = indexes.Length <= LabelValueBuffer.Length
            ? ((Span<string>)buffer)[..indexes.Length]
            : (rented = ArrayPool<string>.Shared.Rent(indexes.Length)).AsSpan(0, indexes.Length);
        for (var i = 0; i < indexes.Length; i++)
        {
            values[i] = LabelValue(tags[indexes[i]].Value);
        }

        var series = labels.Lookup.TryGetValue(values, out var found) ? found : AddSeries(labels, values);
        if (rented is not null)
        {
            ArrayPool<string>.Shared.Return(rented, clearArray: true);
        }

        if (series is null)
        {
            return;
        }

        if (IsObservable)
        {
            series.ObservedGeneration = _generation;
        }

        switch (_aggregation)
        {
            case BridgeAggregation.Add:
                // A counter never goes down; a negative or NaN increment is a caller's bug and is ignored.
                if (value >= 0)
                {
                    ((Counter.Child)series.Child).Inc(value);
                }

                break;
            case BridgeAggregation.AddUpTo:
                ((Counter.Child)series.Child).IncTo(value);
                break;
            case BridgeAggregation.GaugeAdd:
                ((Gauge.Child)series.Child).Inc(value);
                break;
            case BridgeAggregation.GaugeSet:
                ((Gauge.Child)series.Child).Set(value);
                break;
            default:
                ((Histogram.Child)series.Child).Observe(value);
                break;
        }
    }

    /// <summary>Starts an observation round (scrape lock held): series not reported in it are removed by <see cref="EndObservation"/>.</summary>
    public void BeginObservation() => Interlocked.Increment(ref _generation);

    /// <summary>
    /// Removes the series an observable instrument no longer reports (an old config version, a removed upstream),
    /// which also frees their slots under the cap.
    /// </summary>
    public void EndObservation()
    {
        var generation = Volatile.Read(ref _generation);
        foreach (var labels in SnapshotLabelSets())
        {
            foreach (var (values, series) in labels.Series)
            {
                if (series.ObservedGeneration != generation)
                {
                    Remove(labels, values, series);
                }
            }
        }
    }

    /// <summary>The instrument's meter was disposed: its series go.</summary>
    public void RemoveAll()
    {
        foreach (var labels in SnapshotLabelSets())
        {
            foreach (var (values, series) in labels.Series)
            {
                Remove(labels, values, series);
            }
        }
    }

    private void Remove(LabelSet labels, string[] values, Series series)
    {
        if (labels.Series.TryRemove(new KeyValuePair<string[], Series>(values, series)))
        {
            series.Child.Remove();
            Interlocked.Decrement(ref _seriesCount);
        }
    }

    private LabelSet[] SnapshotLabelSets()
    {
        lock (_layoutsLock)
        {
            return [.. _labelSets];
        }
    }

    private TagLayout? FindLayout(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        foreach (var layout in _layouts)
        {
            if (layout.Matches(tags))
            {
                return layout;
            }
        }

        return null;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private TagLayout AddLayout(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        lock (_layoutsLock)
        {
            if (FindLayout(tags) is { } existing)
            {
                return existing;
            }

            // Label names sorted, each once ("a.b" and "a_b" both sanitize to a_b: the first wins); histograms
            // reserve "le" for their buckets.
            var keys = new string[tags.Length];
            var named = new List<(string Name, int Index)>(tags.Length);
            for (var i = 0; i < tags.Length; i++)
            {
                keys[i] = tags[i].Key;
                var name = PrometheusNames.LabelName(tags[i].Key);
                if (name is null || (_kind == PrometheusKind.Histogram && name == "le") || named.Exists(n => n.Name == name))
                {
                    continue;
                }

                named.Add((name, i));
            }

            named.Sort(static (x, y) => string.CompareOrdinal(x.Name, y.Name));
            var names = named.ConvertAll(n => n.Name).ToArray();
            var layout = new TagLayout(keys, named.ConvertAll(n => n.Index).ToArray(), GetLabelSet(names));
            _layouts = [.. _layouts, layout];
            return layout;
        }
    }

    private LabelSet? GetLabelSet(string[] names)
    {
        foreach (var existing in _labelSets)
        {
            if (existing.Names.AsSpan().SequenceEqual(names))
            {
                return existing;
            }
        }

        // A series appears with its first measurement: prometheus-net would otherwise publish a label-less one at 0
        // as soon as it exists, and again after it was removed.
        Collector collector;
        try
        {
            collector = _kind switch
            {
                PrometheusKind.Counter => _factory.CreateCounter(_name, _help, names, new CounterConfiguration { SuppressInitialValue = true }),
                PrometheusKind.Gauge => _factory.CreateGauge(_name, _help, names, new GaugeConfiguration { SuppressInitialValue = true }),
                _ => _factory.CreateHistogram(_name, _help, names, new HistogramConfiguration { Buckets = _buckets, SuppressInitialValue = true }),
            };
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
        {
            return null;
        }

        var labels = new LabelSet(names, collector);
        _labelSets.Add(labels);
        return labels;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private Series? AddSeries(LabelSet labels, ReadOnlySpan<string> values)
    {
        if (Interlocked.Increment(ref _seriesCount) > _maxSeries)
        {
            Interlocked.Decrement(ref _seriesCount);
            _onDropped();
            return null;
        }

        var key = values.ToArray();
        ChildBase child = labels.Collector switch
        {
            Counter counter => counter.WithLabels(key),
            Gauge gauge => gauge.WithLabels(key),
            _ => ((Histogram)labels.Collector).WithLabels(key),
        };

        var series = new Series(child);
        if (labels.Series.TryAdd(key, series))
        {
            return series;
        }

        // Another thread added the same values first; prometheus-net handed both the same child.
        Interlocked.Decrement(ref _seriesCount);
        return labels.Lookup.TryGetValue(values, out var existing) ? existing : null;
    }

    private static string LabelValue(object? value) => value switch
    {
        string s => s,
        null => string.Empty,
        int i when (uint)i < (uint)SmallIntegers.Length => SmallIntegers[i],
        long l when (ulong)l < (ulong)SmallIntegers.Length => SmallIntegers[l],
        bool b => b ? "true" : "false",
        _ => Convert.ToString(value, CultureInfo.InvariantCulture) ?? string.Empty,
    };

    // Status codes, ports below 1000 and other small numbers are tag values often enough to keep their strings.
    private static string[] CreateSmallIntegers()
    {
        var strings = new string[1000];
        for (var i = 0; i < strings.Length; i++)
        {
            strings[i] = i.ToString(CultureInfo.InvariantCulture);
        }

        return strings;
    }

    /// <summary>One ordering of tag keys, resolved to the label set and, per label, the index of its tag.</summary>
    private sealed class TagLayout(string[] keys, int[] indexes, LabelSet? labels)
    {
        public int[] Indexes { get; } = indexes;

        public LabelSet? Labels { get; } = labels;

        public bool Matches(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            if (tags.Length != keys.Length)
            {
                return false;
            }

            for (var i = 0; i < keys.Length; i++)
            {
                if (!string.Equals(tags[i].Key, keys[i], StringComparison.Ordinal))
                {
                    return false;
                }
            }

            return true;
        }
    }

    /// <summary>The prometheus-net collector for one set of label names, and its series by label values.</summary>
    private sealed class LabelSet
    {
        public LabelSet(string[] names, Collector collector)
        {
            Names = names;
            Collector = collector;
            Series = new ConcurrentDictionary<string[], Series>(LabelValuesComparer.Instance);
            Lookup = Series.GetAlternateLookup<ReadOnlySpan<string>>();
        }

        public string[] Names { get; }

        public Collector Collector { get; }

        public ConcurrentDictionary<string[], Series> Series { get; }

        public ConcurrentDictionary<string[], Series>.AlternateLookup<ReadOnlySpan<string>> Lookup { get; }
    }

    private sealed class Series(ChildBase child)
    {
        /// <summary>For observable instruments: the observation round that last reported this series.</summary>
        public int ObservedGeneration;

        public ChildBase Child { get; } = child;
    }

    [InlineArray(Length)]
    private struct LabelValueBuffer
    {
        public const int Length = 8;

        private string _element;
    }
}
