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
        Assert.Same(services.GetRequiredService<MeterBridge>(), services.GetRequiredService<MeterBridge>());
        Assert.Single(services.GetServices<IHostedService>().OfType<MeterBridgeStartup>());
    }

    [Fact]
    public void AddGatewayTelemetry_KeepsAnEarlierBridgeRegistration()
    {
        var meterName = UniqueMeterName();
        using var custom = CreateBridge(meterName);
        using var services = new ServiceCollection()
            .AddSingleton(custom)
            .AddGatewayTelemetry()
            .BuildServiceProvider();

        Assert.Same(custom, services.GetRequiredService<MeterBridge>());
    }

    [Fact]
    public void AddGatewayTelemetry_HonoursConfiguredOptions()
    {
        using var services = new ServiceCollection()
            .AddGatewayTelemetry()
            .Configure<PrometheusMetricsOptions>(o => o.MaxSeriesPerInstrument = 1)
            .BuildServiceProvider();
        var metrics = services.GetRequiredService<GatewayMetrics>();
        var bridge = services.GetRequiredService<MeterBridge>();

        metrics.RecordRejection("alice", "a");
        metrics.RecordRejection("bob", "b");

        // Other meters (System.Runtime, System.Net.Http of parallel tests) are capped at one series too.
        Assert.Single(SampleLines(Scrape(bridge), "llm_gateway_rejections_total"));
        Assert.True(bridge.DroppedMeasurements >= 1);
    }

    [Fact]
    public void Bridge_ResolvedAfterGatewayMetrics_StillSeesItsInstruments()
    {
        using var services = new ServiceCollection().AddGatewayTelemetry().BuildServiceProvider();
        var metrics = services.GetRequiredService<GatewayMetrics>();
        metrics.RecordRejection("lost", "before_bridge");

        var bridge = services.GetRequiredService<MeterBridge>();
        metrics.RecordRejection("alice", "after_bridge");

        var scrape = Scrape(bridge);
        Assert.Equal(1, SampleValue(scrape, "llm_gateway_rejections_total{reason=\"after_bridge\",user=\"alice\"}"));
        Assert.DoesNotContain("before_bridge", scrape);
    }
}
