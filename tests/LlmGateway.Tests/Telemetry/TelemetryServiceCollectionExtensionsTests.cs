using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using static LlmGateway.Tests.Telemetry.TelemetryTestHelpers;

namespace LlmGateway.Tests.Telemetry;

public sealed class TelemetryServiceCollectionExtensionsTests
{
    [Fact]
    public void AddGatewayTelemetry_RegistersSingletons()
    {
        using var services = new ServiceCollection().AddGatewayTelemetry().AddGatewayTelemetry().BuildServiceProvider();

        Assert.Same(services.GetRequiredService<GatewayMetrics>(), services.GetRequiredService<GatewayMetrics>());
        Assert.Same(services.GetRequiredService<PrometheusMetricsCollector>(), services.GetRequiredService<PrometheusMetricsCollector>());
        Assert.Single(services.GetServices<IHostedService>().OfType<PrometheusCollectorStartup>());
    }

    [Fact]
    public void AddGatewayTelemetry_KeepsAnEarlierCollectorRegistration()
    {
        var meterName = UniqueMeterName();
        using var custom = CreateCollector(meterName);
        using var services = new ServiceCollection()
            .AddSingleton(custom)
            .AddGatewayTelemetry()
            .BuildServiceProvider();

        Assert.Same(custom, services.GetRequiredService<PrometheusMetricsCollector>());
    }

    [Fact]
    public void AddGatewayTelemetry_HonoursConfiguredOptions()
    {
        using var services = new ServiceCollection()
            .AddGatewayTelemetry()
            .Configure<PrometheusMetricsOptions>(o => o.MaxSeriesPerInstrument = 1)
            .BuildServiceProvider();
        var metrics = services.GetRequiredService<GatewayMetrics>();
        var collector = services.GetRequiredService<PrometheusMetricsCollector>();

        metrics.RecordRejection("alice", "a");
        metrics.RecordRejection("bob", "b");

        // Other meters (System.Runtime, System.Net.Http of parallel tests) are capped at one series too.
        Assert.Single(SampleLines(Scrape(collector), "llm_gateway_rejections_total"));
        Assert.True(collector.DroppedMeasurements >= 1);
    }

    [Fact]
    public void Collector_ResolvedAfterGatewayMetrics_StillSeesItsInstruments()
    {
        using var services = new ServiceCollection().AddGatewayTelemetry().BuildServiceProvider();
        var metrics = services.GetRequiredService<GatewayMetrics>();
        metrics.RecordRejection("lost", "before_collector");

        var collector = services.GetRequiredService<PrometheusMetricsCollector>();
        metrics.RecordRejection("alice", "after_collector");

        var scrape = Scrape(collector);
        Assert.Equal(1, SampleValue(scrape, "llm_gateway_rejections_total{reason=\"after_collector\",user=\"alice\"}"));
        Assert.DoesNotContain("before_collector", scrape);
    }
}
