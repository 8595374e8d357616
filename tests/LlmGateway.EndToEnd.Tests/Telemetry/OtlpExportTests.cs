using System.Collections.Concurrent;
using System.Net;
using System.Text;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LlmGateway.EndToEnd.Tests.Telemetry;

/// <summary>Gateway:Otlp:Endpoint pushes the gateway's metrics to an OTLP collector (here a loopback fake that keeps what it receives).</summary>
public sealed class OtlpExportTests
{
    [Fact]
    public async Task OtlpEndpoint_ReceivesTheGatewayMetrics_WithTheCollectorHeaders()
    {
        var received = new ConcurrentQueue<(string Body, string? ApiKey)>();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        await using var collector = builder.Build();
        collector.MapPost("/v1/metrics", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);

            // OTLP protobuf carries metric names as plain UTF-8 strings: enough to see what was exported.
            received.Enqueue((Encoding.UTF8.GetString(body.ToArray()), context.Request.Headers["x-collector-key"].ToString()));
            return Results.Ok();
        });
        await collector.StartAsync();
        var collectorUrl = collector.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();

        await using var mock = await MockLlmServer.StartAsync();
        var config = TestConfigs.Default(mock.BaseUrl).Replace("\"Providers\":",
            $"\"Otlp\": {{ \"Endpoint\": \"{collectorUrl}/v1/metrics\", \"Interval\": \"00:00:01\", \"Headers\": {{ \"x-collector-key\": \"collector-secret\" }} }}, \"Providers\":", StringComparison.Ordinal);
        await using var gateway = await GatewayServer.StartAsync(config);
        using (var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat())))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // The request is counted a moment before its cost: an export may fall in between, so wait for one with both.
        var export = await Http.EventuallyAsync(
            () => received.FirstOrDefault(r => r.Body.Contains("llm_gateway_requests", StringComparison.Ordinal) && r.Body.Contains("llm_gateway_cost_usd", StringComparison.Ordinal)).Body,
            "an OTLP export with the gateway's request and cost counters", timeoutMs: 15000);
        Assert.Contains("llm_gateway_tokens", export);
        Assert.All(received, r => Assert.Equal("collector-secret", r.ApiKey));
        await collector.StopAsync();
    }
}
