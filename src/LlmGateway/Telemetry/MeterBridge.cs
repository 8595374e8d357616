using System.Diagnostics.Metrics;
using System.Numerics;
using Prometheus;

namespace LlmGateway.Telemetry;

/// <summary>
/// Exposes the configured System.Diagnostics.Metrics meters as prometheus-net metrics in its own registry, which
/// prometheus-net serves at /metrics (text format, or OpenMetrics when asked). The instruments stay on
/// System.Diagnostics.Metrics so the OTLP export reads the same ones. Counters are prometheus-net counters,
/// up-down counters and gauges gauges, histograms histograms with the instrument's advised buckets; observable
/// instruments are polled before each scrape.
/// </summary>
internal sealed class MeterBridge : IDisposable
{
    internal const string DroppedSeriesMetricName = "llm_gateway_metrics_dropped_series_total";

    // OpenTelemetry's defaults for durations in seconds (what ASP.NET Core advises for http.server.request.duration).
    internal static readonly double[] DefaultSecondsBuckets =
        [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

    // OpenTelemetry's defaults for any other unit.
    internal static readonly double[] DefaultBuckets =
        [0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000];

    private readonly MeterListener _listener;
    private readonly IMetricFactory _factory;
    private readonly string[] _meterPrefixes;
    private readonly string[] _meterNames;
    private readonly int _maxSeries;
    private readonly object? _meterScope;
    private readonly Counter _dropped;
    private readonly Action _onDropped;
    private readonly Lock _observablesLock = new();
    private readonly List<InstrumentBridge> _observables = [];
    private readonly Lock _scrapeLock = new();
    private volatile bool _disposed;

    /// <param name="options">Which meters to expose and the series cap.</param>
    /// <param name="meterFactory">
    /// When given, meters created by another <see cref="IMeterFactory"/> (another host in the same process)
    /// are ignored; meters created without a factory, such as System.Runtime, are always eligible.
    /// </param>
    public MeterBridge(PrometheusMetricsOptions options, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxSeriesPerInstrument);

        _meterPrefixes = [.. options.MeterPrefixes];
        _meterNames = [.. options.MeterNames];
        _maxSeries = options.MaxSeriesPerInstrument;
        _meterScope = meterFactory;

        // One registry per host: two gateways in one process (tests) never see each other's series. Exemplars are
        // off: recording one reads the current trace on every measurement, and promtool cannot parse them.
        Registry = Metrics.NewCustomRegistry();
        _factory = Metrics.WithCustomRegistry(Registry);
        _factory.ExemplarBehavior = ExemplarBehavior.NoExemplars();
        _dropped = _factory.CreateCounter(DroppedSeriesMetricName,
            "Measurements dropped because their instrument already held the maximum number of series, or its name clashed with another metric.");
        _onDropped = () => _dropped.Inc();

        _listener = new MeterListener
        {
            InstrumentPublished = OnInstrumentPublished,
            MeasurementsCompleted = OnMeasurementsCompleted,
        };
        _listener.SetMeasurementEventCallback<long>(static (_, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<int>(static (_, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<short>(static (_, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<byte>(static (_, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<double>(static (_, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<float>(static (_, value, tags, state) => ((InstrumentBridge)state!).Record(value, tags));
        _listener.SetMeasurementEventCallback<decimal>(static (_, value, tags, state) => ((InstrumentBridge)state!).Record((double)value, tags));

        Registry.AddBeforeCollectCallback(Observe);

        // Start() also publishes instruments that already exist, so it does not matter whether the bridge or the
        // instruments are created first.
        _listener.Start();
    }

    /// <summary>The registry /metrics serves.</summary>
    public CollectorRegistry Registry { get; }

    /// <summary>Measurements dropped so far because of the per-instrument series cap or a name clash.</summary>
    public long DroppedMeasurements => (long)_dropped.Value;

    public void Dispose()
    {
        // The registry cannot forget its before-collect callback; it does nothing once this is set.
        _disposed = true;
        _listener.Dispose();
    }

    /// <summary>Polls the observable instruments, and drops the series they stopped reporting.</summary>
    private void Observe()
    {
        if (_disposed)
        {
            return;
        }

        lock (_scrapeLock)
        {
            InstrumentBridge[] observables;
            lock (_observablesLock)
            {
                observables = [.. _observables];
            }

            foreach (var instrument in observables)
            {
                instrument.BeginObservation();
            }

            try
            {
                _listener.RecordObservableInstruments();
            }
            catch (Exception)
            {
                // One failing callback must not cost the whole scrape; the other instruments were still observed.
            }

            foreach (var instrument in observables)
            {
                instrument.EndObservation();
            }
        }
    }

    private bool IsEnabled(Meter meter)
    {
        if (_meterScope is not null && meter.Scope is not null && !ReferenceEquals(meter.Scope, _meterScope))
        {
            return false;
        }

        var name = meter.Name;
        return Array.Exists(_meterNames, exact => string.Equals(name, exact, StringComparison.Ordinal))
            || Array.Exists(_meterPrefixes, prefix => name.StartsWith(prefix, StringComparison.Ordinal));
    }

    private void OnInstrumentPublished(Instrument instrument, MeterListener listener)
    {
        if (_disposed || !IsEnabled(instrument.Meter) || !TryClassify(instrument, out var kind, out var aggregation))
        {
            return;
        }

        var buckets = kind == PrometheusKind.Histogram ? GetBucketBounds(instrument) : null;
        var bridge = new InstrumentBridge(instrument, _factory, kind, aggregation, buckets, _maxSeries, _onDropped);
        if (bridge.IsObservable)
        {
            lock (_observablesLock)
            {
                _observables.Add(bridge);
            }
        }

        listener.EnableMeasurementEvents(instrument, bridge);
    }

    // Called when the instrument's meter is disposed (or the listener is): its series disappear from the scrape.
    private void OnMeasurementsCompleted(Instrument instrument, object? state)
    {
        if (state is not InstrumentBridge bridge)
        {
            return;
        }

        lock (_observablesLock)
        {
            _observables.Remove(bridge);
        }

        if (!_disposed)
        {
            bridge.RemoveAll();
        }
    }

    internal static bool TryClassify(Instrument instrument, out PrometheusKind kind, out BridgeAggregation aggregation)
    {
        (kind, aggregation) = (PrometheusKind.Gauge, BridgeAggregation.GaugeSet);
        var type = instrument.GetType();
        if (!type.IsGenericType)
        {
            return false;
        }

        var definition = type.GetGenericTypeDefinition();
        if (definition == typeof(Counter<>))
        {
            (kind, aggregation) = (PrometheusKind.Counter, BridgeAggregation.Add);
        }
        else if (definition == typeof(ObservableCounter<>))
        {
            (kind, aggregation) = (PrometheusKind.Counter, BridgeAggregation.AddUpTo);
        }
        else if (definition == typeof(UpDownCounter<>))
        {
            (kind, aggregation) = (PrometheusKind.Gauge, BridgeAggregation.GaugeAdd);
        }
        else if (definition == typeof(Histogram<>))
        {
            (kind, aggregation) = (PrometheusKind.Histogram, BridgeAggregation.Observe);
        }
        else if (definition != typeof(ObservableUpDownCounter<>) && definition != typeof(ObservableGauge<>) && definition != typeof(Gauge<>))
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

    // InstrumentAdvice already guarantees strictly increasing bounds; prometheus-net adds +Inf itself.
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

        return bounds.Count == 0 ? null : [.. bounds];
    }
}
