using System.Net;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static LlmGateway.Tests.Telemetry.TelemetryTestHelpers;

namespace LlmGateway.Tests.Telemetry;

public sealed class PrometheusEndpointTests
{
    [Fact]
    public async Task WriteAsync_WritesScrapeWithPrometheusContentType()
    {
        var meterName = UniqueMeterName();
        using var collector = CreateCollector(meterName);
        using var meter = new System.Diagnostics.Metrics.Meter(meterName);
        meter.CreateCounter<long>("hits", description: "Hits.").Add(3);
        var context = new DefaultHttpContext();
        using var body = new MemoryStream();
        context.Response.Body = body;

        await PrometheusEndpoint.WriteAsync(context, collector);

        Assert.Equal(200, context.Response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", context.Response.ContentType);
        var text = System.Text.Encoding.UTF8.GetString(body.ToArray());
        Assert.Contains("# TYPE hits_total counter\nhits_total 3\n", text);
    }

    [Fact]
    public async Task MapGatewayMetrics_ServesGatewayAndAspNetCoreMetrics_OverKestrel()
    {
        await using var app = await StartAppAsync();
        using var client = new HttpClient { BaseAddress = new Uri(ServerAddress(app)) };
        app.Services.GetRequiredService<GatewayMetrics>().RecordRequest("alice", "gpt-4o", 200, 0.2);

        Assert.Equal("hello", await client.GetStringAsync("/hello"));
        var (response, scrape) = await ScrapeUntilAsync(client, s => s.Contains("http_route=\"/hello\"", StringComparison.Ordinal));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        Assert.Equal(1, SampleValue(scrape, "llm_gateway_requests_total{model=\"gpt-4o\",status=\"200\",user=\"alice\"}"));
        Assert.Contains("# TYPE http_server_request_duration_seconds histogram\n", scrape);
        Assert.Contains("# TYPE kestrel_active_connections gauge\n", scrape);
        Assert.Equal(0, SampleValue(scrape, "llm_gateway_metrics_dropped_series_total"));
    }

    [Fact]
    public async Task MapGatewayMetrics_HonoursCustomPattern()
    {
        await using var app = await StartAppAsync("/internal/prometheus");
        using var client = new HttpClient { BaseAddress = new Uri(ServerAddress(app)) };

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/metrics")).StatusCode);
        Assert.Contains("llm_gateway_metrics_dropped_series_total", await client.GetStringAsync("/internal/prometheus"));
    }

    internal static async Task<WebApplication> StartAppAsync(string? pattern = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddGatewayTelemetry();
        var app = builder.Build();
        if (pattern is null)
        {
            app.MapGatewayMetrics();
        }
        else
        {
            app.MapGatewayMetrics(pattern);
        }

        app.MapGet("/hello", () => "hello");
        await app.StartAsync();
        return app;
    }

    internal static string ServerAddress(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();

    // ASP.NET Core records a request's duration after its response is sent, so poll briefly.
    internal static async Task<(HttpResponseMessage Response, string Scrape)> ScrapeUntilAsync(HttpClient client, Func<string, bool> condition)
    {
        for (var attempt = 0; ; attempt++)
        {
            var response = await client.GetAsync("/metrics");
            var scrape = await response.Content.ReadAsStringAsync();
            if (condition(scrape) || attempt == 50)
            {
                return (response, scrape);
            }

            await Task.Delay(20);
        }
    }
}
