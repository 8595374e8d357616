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
    [Theory]
    [InlineData(null)]
    [InlineData("text/plain")]
    [InlineData("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")]
    public async Task MapGatewayMetrics_WithoutOpenMetricsInAccept_ServesTheTextFormat(string? accept)
    {
        await using var app = await StartAppAsync();
        app.Services.GetRequiredService<GatewayMetrics>().RecordRequest("alice", "gpt-4o", 200, 0.2);

        var (contentType, scrape) = await ScrapeAsync(app, accept);

        Assert.Equal("text/plain; version=0.0.4; charset=utf-8", contentType);
        Assert.Contains("# TYPE llm_gateway_requests_total counter\n", scrape);
        Assert.Equal(1, SampleValue(scrape, "llm_gateway_requests_total{model=\"gpt-4o\",status=\"200\",user=\"alice\"}"));
        Assert.DoesNotContain("# EOF", scrape);
    }

    [Theory]
    [InlineData("application/openmetrics-text")]
    [InlineData("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")]
    public async Task MapGatewayMetrics_WhenOpenMetricsIsPreferred_ServesOpenMetrics(string accept)
    {
        await using var app = await StartAppAsync();
        var metrics = app.Services.GetRequiredService<GatewayMetrics>();
        metrics.RecordRequest("alice", "gpt-4o", 200, 0.2);
        metrics.SetConfigVersion("abc123");

        var (contentType, scrape) = await ScrapeAsync(app, accept);

        // OpenMetrics names a counter family without _total and its samples with it, writes floats, ends with EOF.
        Assert.Equal("application/openmetrics-text; version=1.0.0; charset=utf-8", contentType);
        Assert.Contains("# TYPE llm_gateway_requests counter\n", scrape);
        Assert.Equal(1, SampleValue(scrape, "llm_gateway_requests_total{model=\"gpt-4o\",status=\"200\",user=\"alice\"}"));
        Assert.Contains("llm_gateway_request_duration_seconds_bucket{model=\"gpt-4o\",le=\"1.0\"} 1\n", scrape);
        Assert.Equal(["llm_gateway_config_info{version=\"abc123\"} 1.0"], SampleLines(scrape, "llm_gateway_config_info"));
        Assert.EndsWith("# EOF\n", scrape, StringComparison.Ordinal);
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
        Assert.Contains("# TYPE dotnet_gc_heap_total_allocated_bytes_total counter\n", scrape);
        Assert.Contains("# TYPE dotnet_process_cpu_time_seconds_total counter\n", scrape);

        // prometheus-net's default collectors would repeat the runtime meter's series under other names.
        Assert.DoesNotContain("process_cpu_seconds_total", scrape);
        Assert.DoesNotContain("dotnet_collection_count_total", scrape);
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

    private static async Task<(string? ContentType, string Scrape)> ScrapeAsync(WebApplication app, string? accept)
    {
        using var client = new HttpClient { BaseAddress = new Uri(ServerAddress(app)) };
        using var request = new HttpRequestMessage(HttpMethod.Get, "/metrics");
        if (accept is not null)
        {
            request.Headers.TryAddWithoutValidation("Accept", accept);
        }

        using var response = await client.SendAsync(request);
        return (response.Content.Headers.ContentType?.ToString(), await response.Content.ReadAsStringAsync());
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
