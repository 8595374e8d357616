using System.Diagnostics;
using System.Diagnostics.Metrics;
using BenchmarkDotNet.Attributes;
using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Prometheus;

namespace LlmGateway.Benchmarks;

/// <summary>
/// The metrics one LLM call records (GatewayMetrics through the bridge into prometheus-net) and a scrape, next to
/// the two other ways of feeding prometheus-net: recording with it directly, and its own MeterAdapter.
/// 20 users × 3 models exist before the measurement.
/// </summary>
[MemoryDiagnoser]
public class MetricsBenchmarks
{
    private static readonly double[] Buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300];

    private readonly MemoryStream _scrape = new(1 << 20);
    private ServiceProvider _services = null!;
    private GatewayMetrics _metrics = null!;
    private CollectorRegistry _registry = null!;
    private Direct _direct = null!;
    private Meter _adapterMeter = null!;
    private IDisposable _adapter = null!;
    private Counter<long> _adapterRequests = null!;
    private Histogram<double> _adapterDuration = null!;

    [GlobalSetup]
    public void Setup()
    {
        _services = new ServiceCollection().AddGatewayTelemetry().BuildServiceProvider();
        _metrics = _services.GetRequiredService<GatewayMetrics>();
        _registry = _services.GetRequiredService<MeterBridge>().Registry;
        _direct = new Direct(Metrics.WithCustomRegistry(Metrics.NewCustomRegistry()));

        _adapterMeter = new Meter("Bench.Adapter." + Guid.NewGuid().ToString("N"));
        _adapterRequests = _adapterMeter.CreateCounter<long>("requests");
        _adapterDuration = _adapterMeter.CreateHistogram<double>("duration", "s");
        var adapterRegistry = Metrics.NewCustomRegistry();
        _adapter = MeterAdapter.StartListening(new MeterAdapterOptions
        {
            Registry = adapterRegistry,
            MetricFactory = Metrics.WithCustomRegistry(adapterRegistry),
            InstrumentFilterPredicate = i => ReferenceEquals(i.Meter, _adapterMeter),
            ResolveHistogramBuckets = _ => Buckets,
        });

        for (var u = 0; u < 20; u++)
        {
            for (var m = 0; m < 3; m++)
            {
                RecordOneCall("user-" + u, "model-" + m);
                _direct.RecordOneCall("user-" + u, "model-" + m);
                RecordAdapterCall("user-" + u, "model-" + m);
            }
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _adapter.Dispose();
        _adapterMeter.Dispose();
        _services.Dispose();
    }

    [Benchmark(Baseline = true, Description = "One call's metrics: GatewayMetrics → bridge → prometheus-net")]
    public void Bridge() => RecordOneCall("user-7", "model-1");

    [Benchmark(Description = "The same recorded with prometheus-net directly")]
    public void PrometheusDirect() => _direct.RecordOneCall("user-7", "model-1");

    [Benchmark(Description = "Request counter + duration only, through prometheus-net's MeterAdapter")]
    public void Adapter() => RecordAdapterCall("user-7", "model-1");

    [Benchmark(Description = "Request counter + duration only, through the bridge")]
    public void BridgeRequestOnly() => _metrics.RecordRequest("user-7", "model-1", 200, 0.25);

    [Benchmark(Description = "Scrape (text format), 20 users × 3 models")]
    public long Scrape()
    {
        _scrape.Position = 0;
        _registry.CollectAndExportAsTextAsync(_scrape).GetAwaiter().GetResult();
        return _scrape.Position;
    }

    private void RecordOneCall(string user, string model)
    {
        _metrics.RecordRequest(user, model, 200, 0.25);
        _metrics.RecordUpstreamDuration("provider", model, "provider", 0.24);
        _metrics.RecordOverhead(0.00004);
        _metrics.RecordTokens(user, model, 180, 40, 64);
        _metrics.RecordCost(user, "team", model, 0.00123m);
        _metrics.SetBudget(user, 1.5, 10);
    }

    private void RecordAdapterCall(string user, string model)
    {
        _adapterRequests.Add(1, new TagList { { "user", user }, { "model", model }, { "status", "200" } });
        _adapterDuration.Record(0.25, new KeyValuePair<string, object?>("model", model));
    }

    /// <summary>The same series recorded with prometheus-net's own API (no System.Diagnostics.Metrics in between).</summary>
    private sealed class Direct(IMetricFactory factory)
    {
        private readonly Prometheus.Counter _requests = factory.CreateCounter("requests_total", "h", ["model", "status", "user"]);
        private readonly Prometheus.Histogram _duration = factory.CreateHistogram("duration_seconds", "h", ["model"], new HistogramConfiguration { Buckets = Buckets });
        private readonly Prometheus.Histogram _upstream = factory.CreateHistogram("upstream_seconds", "h", ["model", "provider"], new HistogramConfiguration { Buckets = Buckets });
        private readonly Prometheus.Histogram _overhead = factory.CreateHistogram("overhead_seconds", "h", new HistogramConfiguration { Buckets = Buckets });
        private readonly Prometheus.Counter _tokens = factory.CreateCounter("tokens_total", "h", ["model", "type", "user"]);
        private readonly Prometheus.Counter _cost = factory.CreateCounter("cost_total", "h", ["model", "team", "user"]);
        private readonly Prometheus.Gauge _spent = factory.CreateGauge("spent", "h", ["user"]);
        private readonly Prometheus.Gauge _limit = factory.CreateGauge("limit", "h", ["user"]);

        public void RecordOneCall(string user, string model)
        {
            _requests.WithLabels([model, "200", user]).Inc();
            _duration.WithLabels([model]).Observe(0.25);
            _upstream.WithLabels([model, "provider"]).Observe(0.24);
            _overhead.Observe(0.00004);
            _tokens.WithLabels([model, "input", user]).Inc(180);
            _tokens.WithLabels([model, "output", user]).Inc(40);
            _tokens.WithLabels([model, "cached_input", user]).Inc(64);
            _cost.WithLabels([model, "team", user]).Inc(0.00123);
            _spent.WithLabels([user]).Set(1.5);
            _limit.WithLabels([user]).Set(10);
        }
    }
}
