using System.Buffers;
using System.Diagnostics.Metrics;
using System.Numerics;

namespace LlmGateway.Telemetry;

/// <summary>
/// Listens to the configured meters and aggregates their measurements in memory for the Prometheus
/// endpoint: counters as sums, up-down counters and gauges as gauges, histograms as explicit buckets.
/// </summary>
internal sealed class PrometheusMetricsCollector : IDisposable
{
    internal const string DroppedSeriesMetricName = "llm_gateway_metrics_dropped_series";

    // OpenTelemetry's defaults for durations in seconds (what ASP.NET Core advises for http.server.request.duration).
    internal static readonly double[] DefaultSecondsBuckets =
        [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

    // OpenTelemetry's defaults for any other unit.
    internal static readonly double[] DefaultBuckets =
        [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000];

    private readonly MeterListener _listener;
    private readonly string[] _meterPrefixes;
    private readonly string[] _meterNames;
    private readonly int _maxSeries;
    private readonly object? _meterScope;
    private readonly Action _onDropped;
    private readonly Lock _statesLock = new();
    private readonly List<InstrumentState> _states = [];
    private readonly Lock _scrapeLock = new();
    private readonly PrometheusMetric _droppedMetric = new(
        DroppedSeriesMetricName,
        PrometheusMetricType.Counter,
        description: "Measurements dropped because their instrument already held the maximum number of series.");

    private long _droppedMeasurements;

    /// <param name="options">Which meters to expose and the series cap.</param>
    /// <param name="meterFactory">
    /// When given, meters created by another <see cref="IMeterFactory"/> (another host in the same process)
    /// are ignored; meters created without a factory, such as System.Runtime, are always eligible.
    /// </param>
    public PrometheusMetricsCollector(PrometheusMetricsOptions options, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxSeriesPerInstrument);

        _meterPrefixes = [.. options.MeterPrefixes];
        _meterNames = [.. options.MeterNames];
        _maxSeries = options.MaxSeriesPerInstrument;
        _meterScope = meterFactory;
        _onDropped = () => Interlocked.Increment(ref _droppedMeasurements);

        _listener = new MeterListener
        {
            InstrumentPublished = OnInstrumentPublished,
            MeasurementsCompleted = OnMeasurementsCompleted,
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<short>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<byte>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<float>(static (_, value, tags, state) => ((InstrumentState)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<decimal>(static (_, value, tags, state) => ((InstrumentState)state!).Record((double)value, tags));

        // Start() also publishes instruments that already exist, so it does not matter whether the
        // collector or the instruments are created first.
        _listener.Start();
    }

    /// <summary>Measurements dropped so far because of the per-instrument series cap.</summary>
    public long DroppedMeasurements => Interlocked.Read(ref _droppedMeasurements);

    /// <summary>Polls observable instruments and writes every series in the Prometheus text format 0.0.4.</summary>
    public void WriteTo(IBufferWriter<byte> output)
    {
        ArgumentNullException.ThrowIfNull(output);

        lock (_scrapeLock)
        {
            InstrumentState[] states;
            lock (_statesLock)
            {
                states = [.. _states];
            }

            foreach (var state in states)
            {
                if (state.IsObservable)
                {
                    state.BeginObservation();
                }
            }

            try
            {
                _listener.RecordObservableInstruments();
            }
            catch (Exception)
            {
                // One failing callback must not cost the whole scrape; the other instruments were still observed.
            }

            var metrics = new List<PrometheusMetric>(states.Length + 1);
            foreach (var state in states)
            {
                metrics.Add(state.Collect());
            }

            _droppedMetric.Samples.Clear();
            _droppedMetric.Add(TagSet.Empty, DroppedMeasurements);
            metrics.Add(_droppedMetric);

            PrometheusTextSerializer.Write(output, metrics);
        }
    }

    public void Dispose() => _listener.Dispose();

    private bool IsEnabled(Meter meter)
    {
        if (_meterScope is not null && meter.Scope is not null && !ReferenceEquals(meter.Scope, _meterScope))
        {
            return false;
        }

        var name = meter.Name;
        foreach (var exact in _meterNames)
        {
            if (string.Equals(name, exact, StringComparison.Ordinal))
            {
                return true;
            }
        }

        foreach (var prefix in _meterPrefixes)
        {
            if (name.StartsWith(prefix, StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
    }

    private void OnInstrumentPublished(Instrument instrument, MeterListener listener)
    {
        if (!IsEnabled(instrument.Meter) || !TryClassify(instrument, out var type, out var aggregation))
        {
            return;
        }

        var bounds = aggregation == AggregationKind.Histogram ? GetBucketBounds(instrument) : null;
        var state = new InstrumentState(instrument, type, aggregation, bounds, _maxSeries, _onDropped);
        lock (_statesLock)
        {
            _states.Add(state);
        }

        listener.EnableMeasurementEvents(instrument, state);
    }

    // Called when the instrument's meter is disposed (or the listener is): its series disappear from the scrape.
    private void OnMeasurementsCompleted(Instrument instrument, object? state)
    {
        if (state is InstrumentState instrumentState)
        {
            lock (_statesLock)
            {
                _states.Remove(instrumentState);
            }
        }
    }

    internal static bool TryClassify(Instrument instrument, out PrometheusMetricType type, out AggregationKind aggregation)
    {
        type = PrometheusMetricType.Gauge;
        aggregation = AggregationKind.LastValue;
        var instrumentType = instrument.GetType();
        if (!instrumentType.IsGenericType)
        {
            return false;
        }

        var definition = instrumentType.GetGenericTypeDefinition();
        var valueType = instrumentType.GetGenericArguments()[0];
        var integral = valueType == typeof(long) || valueType == typeof(int) || valueType == typeof(short) || valueType == typeof(byte);
        var sum = integral ? AggregationKind.LongSum : AggregationKind.DoubleSum;

        // Observable counters report cumulative totals, so they keep the last value like gauges do.
        if (definition == typeof(Counter<>))
        {
            (type, aggregation) = (PrometheusMetricType.Counter, sum);
        }
        else if (definition == typeof(ObservableCounter<>))
        {
            (type, aggregation) = (PrometheusMetricType.Counter, AggregationKind.LastValue);
        }
        else if (definition == typeof(UpDownCounter<>))
        {
            (type, aggregation) = (PrometheusMetricType.Gauge, sum);
        }
        else if (definition == typeof(ObservableUpDownCounter<>) || definition == typeof(ObservableGauge<>) || definition == typeof(Gauge<>))
        {
            (type, aggregation) = (PrometheusMetricType.Gauge, AggregationKind.LastValue);
        }
        else if (definition == typeof(Histogram<>))
        {
            (type, aggregation) = (PrometheusMetricType.Histogram, AggregationKind.Histogram);
        }
        else
        {
            return false;
        }

        return true;
    }

    internal static double[] GetBucketBounds(Instrument instrument)
    {
        var advised = instrument switch
        {
            Instrument<double> i => ToBounds(i.Advice?.HistogramBucketBoundaries),
            Instrument<long> i => ToBounds(i.Advice?.HistogramBucketBoundaries),
            Instrument<int> i => ToBounds(i.Advice?.HistogramBucketBoundaries),
            Instrument<float> i => ToBounds(i.Advice?.HistogramBucketBoundaries),
            Instrument<short> i => ToBounds(i.Advice?.HistogramBucketBoundaries),
            Instrument<byte> i => ToBounds(i.Advice?.HistogramBucketBoundaries),
            Instrument<decimal> i => ToBounds(i.Advice?.HistogramBucketBoundaries),
            _ => null,
        };

        return advised ?? (instrument.Unit == "s" ? DefaultSecondsBuckets : DefaultBuckets);
    }

    // InstrumentAdvice already guarantees strictly increasing bounds; +Inf is implicit in Prometheus.
    private static double[]? ToBounds<T>(IReadOnlyList<T>? advised)
        where T : struct, INumberBase<T>
    {
        if (advised is null || advised.Count == 0)
        {
            return null;
        }

        var bounds = new List<double>(advised.Count);
        foreach (var bound in advised)
        {
            var value = double.CreateTruncating(bound);
            if (double.IsFinite(value))
            {
                bounds.Add(value);
            }
        }

        return [.. bounds];
    }
}
