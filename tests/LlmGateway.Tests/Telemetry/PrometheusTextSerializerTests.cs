using System.Buffers;
using System.Text;
using LlmGateway.Telemetry;
using static LlmGateway.Tests.Telemetry.TelemetryTestHelpers;

namespace LlmGateway.Tests.Telemetry;

public sealed class PrometheusTextSerializerTests
{
    [Fact]
    public void Serialize_WritesHelpAndTypeBeforeSamples()
    {
        var metric = new PrometheusMetric("queue_length", PrometheusMetricType.Gauge, description: "Items waiting.")
            .Add(Tags(("queue", "a")), 3);

        Assert.Equal(
            "# HELP queue_length Items waiting.\n# TYPE queue_length gauge\nqueue_length{queue=\"a\"} 3\n",
            Serialize(metric));
    }

    [Fact]
    public void Serialize_UsesInstrumentNameAsHelp_WhenNoDescription()
    {
        var metric = new PrometheusMetric("dotnet.gc.heap.total_allocated", PrometheusMetricType.Gauge).Add(TagSet.Empty, 1);

        Assert.StartsWith("# HELP dotnet_gc_heap_total_allocated dotnet.gc.heap.total_allocated\n", Serialize(metric));
    }

    [Fact]
    public void Serialize_EscapesHelpText()
    {
        var metric = new PrometheusMetric("m", PrometheusMetricType.Gauge, description: "back\\slash \"quoted\"\nsecond line")
            .Add(TagSet.Empty, 1);

        Assert.StartsWith("# HELP m back\\\\slash \"quoted\"\\nsecond line\n", Serialize(metric));
    }

    [Fact]
    public void Serialize_EscapesLabelValues()
    {
        var metric = new PrometheusMetric("m", PrometheusMetricType.Gauge, description: "d")
            .Add(Tags(("path", "C:\\dir \"x\"\nnext"), ("plain", "é✓")), 1);

        Assert.Contains("m{path=\"C:\\\\dir \\\"x\\\"\\nnext\",plain=\"é✓\"} 1\n", Serialize(metric));
    }

    [Fact]
    public void Serialize_AppendsTotalToCounters_Once()
    {
        var output = Serialize(
            new PrometheusMetric("llm_gateway_requests", PrometheusMetricType.Counter, description: "a").Add(TagSet.Empty, 1),
            new PrometheusMetric("already_total", PrometheusMetricType.Counter, description: "b").Add(TagSet.Empty, 2));

        Assert.Contains("# TYPE llm_gateway_requests_total counter\nllm_gateway_requests_total 1\n", output);
        Assert.Contains("# TYPE already_total counter\nalready_total 2\n", output);
        Assert.DoesNotContain("_total_total", output);
    }

    [Theory]
    [InlineData("http.server.request.duration", "s", "Histogram", "http_server_request_duration_seconds")]
    [InlineData("llm_gateway_request_duration_seconds", "s", "Histogram", "llm_gateway_request_duration_seconds")]
    [InlineData("payload.size", "By", "Histogram", "payload_size_bytes")]
    [InlineData("process.cpu.time", "s", "Counter", "process_cpu_time_seconds_total")]
    [InlineData("sent_total", "By", "Counter", "sent_bytes_total")]
    [InlineData("kestrel.active-connections", "{connection}", "Gauge", "kestrel_active_connections")]
    [InlineData("9lives", null, "Gauge", "_9lives")]
    [InlineData("job:rate5m", null, "Gauge", "job:rate5m")]
    [InlineData("dotnet.assembly.count", "{assembly}", "Gauge", "dotnet_assembly_count_current")]
    [InlineData("pool.sum", null, "Gauge", "pool_sum_current")]
    [InlineData("dotnet.gc.count", null, "Counter", "dotnet_gc_count_total")]
    [InlineData("naïve name", null, "Gauge", "na_ve_name")]
    public void GetMetricName_SanitizesAndAppendsSuffixes(string name, string? unit, string type, string expected)
    {
        Assert.Equal(expected, PrometheusTextSerializer.GetMetricName(name, unit, Enum.Parse<PrometheusMetricType>(type)));
    }

    [Fact]
    public void Serialize_SanitizesLabelNames()
    {
        var metric = new PrometheusMetric("m", PrometheusMetricType.Gauge, description: "d")
            .Add(Tags(("http.route", "/"), ("0x", "1"), ("a:b", "2")), 1);

        Assert.Contains("m{_0x=\"1\",a_b=\"2\",http_route=\"/\"} 1\n", Serialize(metric));
    }

    [Fact]
    public void Serialize_Histogram_DropsTagNamedLe()
    {
        var metric = new PrometheusMetric("h", PrometheusMetricType.Histogram, description: "d")
            .AddHistogram(Tags(("le", "clash"), ("model", "m")), [1], [1, 0], 0.5);

        var output = Serialize(metric);

        Assert.Contains("h_bucket{model=\"m\",le=\"1\"} 1\n", output);
        Assert.Contains("h_sum{model=\"m\"} 0.5\n", output);
        Assert.Contains("h_count{model=\"m\"} 1\n", output);
    }

    [Fact]
    public void Serialize_WritesLabelOnce_WhenTwoNamesSanitizeAlike()
    {
        var metric = new PrometheusMetric("m", PrometheusMetricType.Gauge, description: "d")
            .Add(Tags(("a.b", "first"), ("a_b", "second")), 1);

        Assert.Contains("m{a_b=\"first\"} 1\n", Serialize(metric));
    }

    [Fact]
    public void Serialize_WritesCumulativeHistogramBuckets()
    {
        var metric = new PrometheusMetric("latency", PrometheusMetricType.Histogram, "s", "Latency.")
            .AddHistogram(Tags(("model", "m1")), [0.005, 1], [1, 2, 3], 10.5);

        Assert.Equal(
            "# HELP latency_seconds Latency.\n" +
            "# TYPE latency_seconds histogram\n" +
            "latency_seconds_bucket{model=\"m1\",le=\"0.005\"} 1\n" +
            "latency_seconds_bucket{model=\"m1\",le=\"1\"} 3\n" +
            "latency_seconds_bucket{model=\"m1\",le=\"+Inf\"} 6\n" +
            "latency_seconds_sum{model=\"m1\"} 10.5\n" +
            "latency_seconds_count{model=\"m1\"} 6\n",
            Serialize(metric));
    }

    [Fact]
    public void Serialize_HistogramWithoutLabels_WritesOnlyLe()
    {
        var metric = new PrometheusMetric("overhead_seconds", PrometheusMetricType.Histogram, "s", "d")
            .AddHistogram(TagSet.Empty, [0.25], [0, 2], 0.5);

        var output = Serialize(metric);

        Assert.Contains("overhead_seconds_bucket{le=\"0.25\"} 0\n", output);
        Assert.Contains("overhead_seconds_bucket{le=\"+Inf\"} 2\n", output);
        Assert.Contains("overhead_seconds_sum 0.5\n", output);
        Assert.Contains("overhead_seconds_count 2\n", output);
    }

    [Fact]
    public void Serialize_FormatsSpecialAndFractionalValues()
    {
        var metric = new PrometheusMetric("m", PrometheusMetricType.Gauge, description: "d")
            .Add(Tags(("k", "a")), double.NaN)
            .Add(Tags(("k", "b")), double.PositiveInfinity)
            .Add(Tags(("k", "c")), double.NegativeInfinity)
            .Add(Tags(("k", "d")), 0.1)
            .Add(Tags(("k", "e")), -2.5)
            .Add(Tags(("k", "f")), 12345678);

        var output = Serialize(metric);

        Assert.Contains("m{k=\"a\"} NaN\n", output);
        Assert.Contains("m{k=\"b\"} +Inf\n", output);
        Assert.Contains("m{k=\"c\"} -Inf\n", output);
        Assert.Contains("m{k=\"d\"} 0.1\n", output);
        Assert.Contains("m{k=\"e\"} -2.5\n", output);
        Assert.Contains("m{k=\"f\"} 12345678\n", output);
    }

    [Fact]
    public void Serialize_OrdersFamiliesByNameAndSeriesByLabels()
    {
        var zeta = new PrometheusMetric("zeta", PrometheusMetricType.Gauge, description: "z")
            .Add(Tags(("k", "b")), 2)
            .Add(Tags(("k", "a")), 1);
        var alpha = new PrometheusMetric("alpha", PrometheusMetricType.Gauge, description: "a")
            .Add(TagSet.Empty, 0);

        Assert.Equal(
            "# HELP alpha a\n# TYPE alpha gauge\nalpha 0\n" +
            "# HELP zeta z\n# TYPE zeta gauge\nzeta{k=\"a\"} 1\nzeta{k=\"b\"} 2\n",
            Serialize(zeta, alpha));
    }

    [Fact]
    public void Serialize_MergesMetricsWithTheSameName_IntoOneFamily()
    {
        var first = new PrometheusMetric("shared", PrometheusMetricType.Gauge, description: "d").Add(Tags(("k", "a")), 1);
        var second = new PrometheusMetric("shared", PrometheusMetricType.Gauge, description: "d")
            .Add(Tags(("k", "b")), 2)
            .Add(Tags(("k", "a")), 3);

        var output = Serialize(first, second);

        Assert.Single(output.Split('\n'), line => line == "# TYPE shared gauge");
        Assert.Equal(["shared{k=\"a\"} 1", "shared{k=\"b\"} 2"], SampleLines(output, "shared"));
    }

    [Fact]
    public void Serialize_SkipsMetricsWithoutSamples()
    {
        Assert.Equal(string.Empty, Serialize(new PrometheusMetric("idle", PrometheusMetricType.Counter, description: "d")));
    }

    [Fact]
    public void Serialize_ThroughSmallBuffers_MatchesSingleBuffer()
    {
        var metric = new PrometheusMetric("wide", PrometheusMetricType.Histogram, "s", "A family larger than one buffer.");
        for (var i = 0; i < 500; i++)
        {
            metric.AddHistogram(Tags(("series", "s" + i), ("text", new string('x', i % 50) + "\"\\\n")), [0.1, 1, 10], [1, 2, 3, i], i * 0.5);
        }

        var expected = Serialize(metric);
        var small = new SmallSegmentWriter();
        PrometheusTextSerializer.Write(small, [metric]);

        Assert.True(expected.Length > 100_000);
        Assert.Equal(expected, Encoding.UTF8.GetString(small.ToArray()));
    }

    /// <summary>Hands out exactly the size asked for, so every buffer boundary in the serializer is crossed.</summary>
    private sealed class SmallSegmentWriter : IBufferWriter<byte>
    {
        private readonly List<byte> _written = [];
        private byte[] _current = [];

        public void Advance(int count) => _written.AddRange(_current.AsSpan(0, count));

        public Memory<byte> GetMemory(int sizeHint = 0) => _current = new byte[Math.Max(sizeHint, 1)];

        public Span<byte> GetSpan(int sizeHint = 0) => GetMemory(sizeHint).Span;

        public byte[] ToArray() => [.. _written];
    }
}
