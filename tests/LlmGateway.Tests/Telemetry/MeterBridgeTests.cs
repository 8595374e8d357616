using System.Diagnostics;
using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using static LlmGateway.Tests.Telemetry.TelemetryTestHelpers;

namespace LlmGateway.Tests.Telemetry;

/// <summary>System.Diagnostics.Metrics instruments as prometheus-net series: kinds, names, labels, bounds.</summary>
public sealed class MeterBridgeTests
{
    private readonly string _meterName = UniqueMeterName();

    [Fact]
    public void Counter_AggregatesPerTagSet()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var counter = meter.CreateCounter<long>("requests", description: "Requests.");

        counter.Add(1, new KeyValuePair<string, object?>("user", "alice"));
        counter.Add(2, new KeyValuePair<string, object?>("user", "alice"));
        counter.Add(5, new KeyValuePair<string, object?>("user", "bob"));
        counter.Add(7);

        var scrape = Scrape(bridge);

        Assert.Contains("# TYPE requests_total counter\n", scrape);
        Assert.Equal(3, SampleValue(scrape, "requests_total{user=\"alice\"}"));
        Assert.Equal(5, SampleValue(scrape, "requests_total{user=\"bob\"}"));
        Assert.Equal(7, SampleValue(scrape, "requests_total"));
    }

    [Fact]
    public void Counter_SameTagsInDifferentOrder_SameSeries()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var counter = meter.CreateCounter<long>("ordered");

        counter.Add(1, new TagList { { "b", "2" }, { "a", "1" }, { "c", "3" } });
        counter.Add(1, new TagList { { "c", "3" }, { "a", "1" }, { "b", "2" } });
        counter.Add(1, new TagList { { "a", "1" }, { "b", "2" }, { "c", "3" } });

        var lines = SampleLines(Scrape(bridge), "ordered_total");

        Assert.Equal(["ordered_total{a=\"1\",b=\"2\",c=\"3\"} 3"], lines);
    }

    [Fact]
    public void Counter_ManyTags_SortedBeyondStackBuffer()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var counter = meter.CreateCounter<long>("wide");
        var tags = Enumerable.Range(0, 12).Select(i => new KeyValuePair<string, object?>("t" + (char)('a' + i), i)).ToArray();

        counter.Add(1, tags);
        counter.Add(1, tags.Reverse().ToArray());

        var lines = SampleLines(Scrape(bridge), "wide_total");

        Assert.Single(lines);
        Assert.StartsWith("wide_total{ta=\"0\",tb=\"1\",", lines[0], StringComparison.Ordinal);
        Assert.EndsWith(",tl=\"11\"} 2", lines[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Counter_NumericAndStringTagValues_WithSameText_SameSeries()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var counter = meter.CreateCounter<long>("statuses");

        counter.Add(1, new KeyValuePair<string, object?>("status", 200));
        counter.Add(1, new KeyValuePair<string, object?>("status", "200"));
        counter.Add(1, new KeyValuePair<string, object?>("flag", true));
        counter.Add(1, new KeyValuePair<string, object?>("none", null));

        var scrape = Scrape(bridge);

        Assert.Equal(2, SampleValue(scrape, "statuses_total{status=\"200\"}"));
        Assert.Equal(1, SampleValue(scrape, "statuses_total{flag=\"true\"}"));
        Assert.Equal(1, SampleValue(scrape, "statuses_total{none=\"\"}"));
    }

    [Fact]
    public void Tags_BecomeSanitizedLabels_EachOnce_AndHistogramsDropLe()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        meter.CreateGauge<int>("g").Record(1, new TagList { { "http.route", "/" }, { "0x", "1" }, { "a.b", "first" }, { "a_b", "second" } });
        meter.CreateHistogram<double>("h", "s", "d", tags: null, new InstrumentAdvice<double> { HistogramBucketBoundaries = [1] })
            .Record(0.5, new TagList { { "le", "clash" }, { "model", "m" } });
        meter.CreateCounter<long>("escaped").Add(1, new KeyValuePair<string, object?>("path", "C:\\dir \"x\"\nnext"));

        var scrape = Scrape(bridge);

        Assert.Equal(["g{_0x=\"1\",a_b=\"first\",http_route=\"/\"} 1"], SampleLines(scrape, "g"));
        Assert.Equal(1, SampleValue(scrape, "h_seconds_bucket{model=\"m\",le=\"1\"}"));
        Assert.Equal(0.5, SampleValue(scrape, "h_seconds_sum{model=\"m\"}"));
        Assert.Equal(1, SampleValue(scrape, "escaped_total{path=\"C:\\\\dir \\\"x\\\"\\nnext\"}"));
    }

    [Fact]
    public void SameNameWithAnotherType_IsDropped_AndCounted()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        meter.CreateCounter<long>("clash").Add(1);
        meter.CreateGauge<long>("clash_total").Record(5);

        var scrape = Scrape(bridge);

        Assert.Contains("# TYPE clash_total counter\n", scrape);
        Assert.Equal(["clash_total 1"], SampleLines(scrape, "clash_total"));
        Assert.Equal(1, bridge.DroppedMeasurements);
    }

    [Fact]
    public void SameInstrumentName_InTwoMeters_SharesOneSeries()
    {
        using var bridge = CreateBridge(_meterName);
        using var first = new Meter(_meterName);
        using var second = new Meter(_meterName);
        first.CreateCounter<long>("shared").Add(1, new KeyValuePair<string, object?>("k", "v"));
        second.CreateCounter<long>("shared").Add(2, new KeyValuePair<string, object?>("k", "v"));

        Assert.Equal(["shared_total{k=\"v\"} 3"], SampleLines(Scrape(bridge), "shared_total"));
    }

    [Fact]
    public void Counter_ConcurrentAdds_AreNotLost()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var longs = meter.CreateCounter<long>("concurrent_long");
        var doubles = meter.CreateCounter<double>("concurrent_double");
        var histogram = meter.CreateHistogram<double>("concurrent_hist", "s");
        const int Threads = 8;
        const int PerThread = 20_000;

        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, thread =>
        {
            for (var i = 0; i < PerThread; i++)
            {
                var tag = new KeyValuePair<string, object?>("shard", (i % 4).ToString(System.Globalization.CultureInfo.InvariantCulture));
                longs.Add(1, tag);
                doubles.Add(0.5, tag);
                histogram.Record(0.001, tag);
            }
        });

        var scrape = Scrape(bridge);
        for (var shard = 0; shard < 4; shard++)
        {
            Assert.Equal(Threads * PerThread / 4, SampleValue(scrape, $"concurrent_long_total{{shard=\"{shard}\"}}"));
            Assert.Equal(Threads * PerThread / 4 * 0.5, SampleValue(scrape, $"concurrent_double_total{{shard=\"{shard}\"}}"));
            Assert.Equal(Threads * PerThread / 4, SampleValue(scrape, $"concurrent_hist_seconds_count{{shard=\"{shard}\"}}"));
        }
    }

    [Fact]
    public void AllMeasurementTypes_AreRecorded()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);

        meter.CreateCounter<byte>("c_byte").Add(2);
        meter.CreateCounter<short>("c_short").Add(2);
        meter.CreateCounter<int>("c_int").Add(2);
        meter.CreateCounter<long>("c_long").Add(2);
        meter.CreateCounter<float>("c_float").Add(2.5f);
        meter.CreateCounter<double>("c_double").Add(2.5);
        meter.CreateCounter<decimal>("c_decimal").Add(2.5m);
        meter.CreateHistogram<int>("h_int").Record(3);

        var scrape = Scrape(bridge);

        Assert.Equal(2, SampleValue(scrape, "c_byte_total"));
        Assert.Equal(2, SampleValue(scrape, "c_short_total"));
        Assert.Equal(2, SampleValue(scrape, "c_int_total"));
        Assert.Equal(2, SampleValue(scrape, "c_long_total"));
        Assert.Equal(2.5, SampleValue(scrape, "c_float_total"));
        Assert.Equal(2.5, SampleValue(scrape, "c_double_total"));
        Assert.Equal(2.5, SampleValue(scrape, "c_decimal_total"));
        Assert.Equal(3, SampleValue(scrape, "h_int_sum"));
        Assert.Equal(1, SampleValue(scrape, "h_int_bucket{le=\"5\"}"));
    }

    [Fact]
    public void UpDownCounter_IsExposedAsGauge()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var inFlight = meter.CreateUpDownCounter<long>("in_flight");

        inFlight.Add(5);
        inFlight.Add(-2);

        var scrape = Scrape(bridge);

        Assert.Contains("# TYPE in_flight gauge\n", scrape);
        Assert.Equal(3, SampleValue(scrape, "in_flight"));
    }

    [Fact]
    public void Gauge_KeepsLastValue()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var gauge = meter.CreateGauge<double>("temperature");

        gauge.Record(5);
        gauge.Record(3.5);

        var scrape = Scrape(bridge);

        Assert.Contains("# TYPE temperature gauge\n", scrape);
        Assert.Equal(3.5, SampleValue(scrape, "temperature"));
    }

    [Fact]
    public void ObservableGauge_IsPolledAtEachScrape()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var value = 1;
        var polls = 0;
        meter.CreateObservableGauge("observed", () =>
        {
            polls++;
            return new Measurement<int>(value, new KeyValuePair<string, object?>("k", "v"));
        });

        Assert.Equal(0, polls);
        Assert.Equal(1, SampleValue(Scrape(bridge), "observed{k=\"v\"}"));

        value = 42;
        Assert.Equal(42, SampleValue(Scrape(bridge), "observed{k=\"v\"}"));
        Assert.Equal(2, polls);
    }

    [Fact]
    public void ObservableGauge_SeriesNoLongerReported_DisappearsFromScrape()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var upstreams = new List<string> { "a", "b" };
        meter.CreateObservableGauge("circuit", () =>
            upstreams.Select(u => new Measurement<int>(2, new KeyValuePair<string, object?>("upstream", u))).ToArray());

        Assert.Equal(2, SampleLines(Scrape(bridge), "circuit").Length);

        upstreams.Remove("a");
        Assert.Equal(["circuit{upstream=\"b\"} 2"], SampleLines(Scrape(bridge), "circuit"));
    }

    [Fact]
    public void ObservableCounter_ReportsTheCumulativeValue()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        long total = 10;
        meter.CreateObservableCounter("cpu.time", () => total, unit: "s");

        Assert.Equal(10, SampleValue(Scrape(bridge), "cpu_time_seconds_total"));
        total = 15;
        var scrape = Scrape(bridge);

        Assert.Contains("# TYPE cpu_time_seconds_total counter\n", scrape);
        Assert.Equal(15, SampleValue(scrape, "cpu_time_seconds_total"));
    }

    [Fact]
    public void ObservableCallbackThatThrows_DoesNotBreakTheScrape()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        meter.CreateObservableGauge<int>("broken", (Func<int>)(() => throw new InvalidOperationException("boom")));
        meter.CreateObservableGauge("working", () => 1);

        var scrape = Scrape(bridge);

        Assert.Equal(1, SampleValue(scrape, "working"));
        Assert.Empty(SampleLines(scrape, "broken"));
    }

    [Fact]
    public void Histogram_UsesAdvisedBucketBoundaries()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var histogram = meter.CreateHistogram("advised", "s", "d", tags: null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [1, 2] });

        foreach (var value in new[] { 0.5, 1, 1.5, 3 })
        {
            histogram.Record(value);
        }

        var scrape = Scrape(bridge);

        Assert.Equal(
            [
                "advised_seconds_bucket{le=\"1\"} 2",
                "advised_seconds_bucket{le=\"2\"} 3",
                "advised_seconds_bucket{le=\"+Inf\"} 4",
            ],
            SampleLines(scrape, "advised_seconds_bucket"));
        Assert.Equal(6, SampleValue(scrape, "advised_seconds_sum"));
        Assert.Equal(4, SampleValue(scrape, "advised_seconds_count"));
    }

    [Fact]
    public void Histogram_WithoutAdvice_UsesDefaultSecondsBuckets()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        meter.CreateHistogram<double>("plain", "s").Record(0.2);

        var buckets = SampleLines(Scrape(bridge), "plain_seconds_bucket");

        Assert.Equal(MeterBridge.DefaultSecondsBuckets.Length + 1, buckets.Length);
        Assert.Equal("plain_seconds_bucket{le=\"0.005\"} 0", buckets[0]);
        Assert.Equal("plain_seconds_bucket{le=\"0.25\"} 1", buckets[6]);
        Assert.Equal("plain_seconds_bucket{le=\"+Inf\"} 1", buckets[^1]);
    }

    [Fact]
    public void SeriesCap_DropsNewTagSets_AndCountsThem()
    {
        using var bridge = CreateBridge(_meterName, maxSeries: 3);
        using var meter = new Meter(_meterName);
        var counter = meter.CreateCounter<long>("capped");

        for (var i = 0; i < 5; i++)
        {
            counter.Add(1, new KeyValuePair<string, object?>("user", "u" + i));
        }

        counter.Add(10, new KeyValuePair<string, object?>("user", "u0"));

        var scrape = Scrape(bridge);

        Assert.Equal(3, SampleLines(scrape, "capped_total").Length);
        Assert.Equal(11, SampleValue(scrape, "capped_total{user=\"u0\"}"));
        Assert.Null(SampleValue(scrape, "capped_total{user=\"u4\"}"));
        Assert.Equal(2, bridge.DroppedMeasurements);
        Assert.Contains("# TYPE llm_gateway_metrics_dropped_series_total counter\n", scrape);
        Assert.Equal(2, SampleValue(scrape, "llm_gateway_metrics_dropped_series_total"));
    }

    [Fact]
    public void SeriesCap_ConcurrentNewTagSets_NeverExceedsCap()
    {
        using var bridge = CreateBridge(_meterName, maxSeries: 50);
        using var meter = new Meter(_meterName);
        var counter = meter.CreateCounter<long>("racing");

        Parallel.For(0, 1_000, i => counter.Add(1, new KeyValuePair<string, object?>("id", i)));

        Assert.Equal(50, SampleLines(Scrape(bridge), "racing_total").Length);
        Assert.Equal(950, bridge.DroppedMeasurements);
    }

    [Fact]
    public void Instruments_PublishedBeforeOrAfterTheBridgeStarts_AreBothCollected()
    {
        using var meter = new Meter(_meterName);
        var early = meter.CreateCounter<long>("early");
        using var bridge = CreateBridge(_meterName);
        var late = meter.CreateCounter<long>("late");

        early.Add(1);
        late.Add(2);

        var scrape = Scrape(bridge);

        Assert.Equal(1, SampleValue(scrape, "early_total"));
        Assert.Equal(2, SampleValue(scrape, "late_total"));
    }

    [Fact]
    public void DisposedMeter_DisappearsFromScrape()
    {
        using var bridge = CreateBridge(_meterName);
        var meter = new Meter(_meterName);
        meter.CreateCounter<long>("transient").Add(1);
        Assert.Equal(1, SampleValue(Scrape(bridge), "transient_total"));

        meter.Dispose();

        Assert.Null(SampleValue(Scrape(bridge), "transient_total"));
    }

    [Fact]
    public void MetersNotConfigured_AreIgnored()
    {
        using var bridge = CreateBridge(_meterName);
        using var other = new Meter(UniqueMeterName());
        other.CreateCounter<long>("elsewhere").Add(1);

        Assert.DoesNotContain("elsewhere", Scrape(bridge));
    }

    [Fact]
    public void MetersFromAnotherMeterFactory_AreIgnored()
    {
        using var own = new ServiceCollection().AddMetrics().BuildServiceProvider();
        using var other = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var options = new PrometheusMetricsOptions();
        options.MeterPrefixes.Clear();
        options.MeterNames.Clear();
        options.MeterNames.Add(_meterName);
        using var bridge = new MeterBridge(options, own.GetRequiredService<IMeterFactory>());

        own.GetRequiredService<IMeterFactory>().Create(_meterName).CreateCounter<long>("mine").Add(1);
        other.GetRequiredService<IMeterFactory>().Create(_meterName).CreateCounter<long>("theirs").Add(1);
        new Meter(_meterName).CreateCounter<long>("unscoped").Add(1);

        var scrape = Scrape(bridge);

        Assert.Equal(1, SampleValue(scrape, "mine_total"));
        Assert.Equal(1, SampleValue(scrape, "unscoped_total"));
        Assert.DoesNotContain("theirs", scrape);
    }

    [Fact]
    public void Counter_AddOnExistingSeries_DoesNotAllocate()
    {
        using var bridge = CreateBridge(_meterName);
        using var meter = new Meter(_meterName);
        var counter = meter.CreateCounter<long>("hot");
        var histogram = meter.CreateHistogram<double>("hot_latency", "s");
        var tags = new TagList { { "user", "alice" }, { "model", "gpt-4o" }, { "status", 200 } };

        // Warm up: creates the series and gets the path jitted.
        for (var i = 0; i < 1_000; i++)
        {
            counter.Add(1, tags);
            histogram.Record(0.01, tags);
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++)
        {
            counter.Add(1, tags);
            histogram.Record(0.01, tags);
        }

        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.Equal(11_000, SampleValue(Scrape(bridge), "hot_total{model=\"gpt-4o\",status=\"200\",user=\"alice\"}"));
    }
}
