using LlmGateway.Telemetry;

namespace LlmGateway.Tests.Telemetry;

public sealed class PrometheusNamesTests
{
    [Theory]
    [InlineData("http.server.request.duration", "s", "Histogram", "http_server_request_duration_seconds")]
    [InlineData("llm_gateway_request_duration_seconds", "s", "Histogram", "llm_gateway_request_duration_seconds")]
    [InlineData("llm_gateway_requests", "{request}", "Counter", "llm_gateway_requests_total")]
    [InlineData("already_total", null, "Counter", "already_total")]
    [InlineData("payload.size", "By", "Histogram", "payload_size_bytes")]
    [InlineData("process.cpu.time", "s", "Counter", "process_cpu_time_seconds_total")]
    [InlineData("sent_total", "By", "Counter", "sent_bytes_total")]
    [InlineData("kestrel.active-connections", "{connection}", "Gauge", "kestrel_active_connections")]
    [InlineData("9lives", null, "Gauge", "_9lives")]
    [InlineData("job:rate5m", null, "Gauge", "job_rate5m")]
    [InlineData("dotnet.assembly.count", "{assembly}", "Gauge", "dotnet_assembly_count_current")]
    [InlineData("pool.sum", null, "Gauge", "pool_sum_current")]
    [InlineData("dotnet.gc.count", null, "Counter", "dotnet_gc_count_total")]
    [InlineData("naïve name", null, "Gauge", "na_ve_name")]
    public void MetricName_SanitizesAndAppendsSuffixes(string name, string? unit, string kind, string expected)
    {
        Assert.Equal(expected, PrometheusNames.MetricName(name, unit, Enum.Parse<PrometheusKind>(kind)));
    }

    [Theory]
    [InlineData("http.route", "http_route")]
    [InlineData("0x", "_0x")]
    [InlineData("a:b", "a_b")]
    [InlineData("user", "user")]
    [InlineData("__reserved", null)]
    [InlineData("_.x", null)]
    public void LabelName_SanitizesAndRefusesReservedNames(string tag, string? expected)
    {
        Assert.Equal(expected, PrometheusNames.LabelName(tag));
    }
}
