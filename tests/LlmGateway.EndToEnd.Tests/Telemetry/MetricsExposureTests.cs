using System.Net;
using System.Net.Sockets;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Telemetry;

/// <summary>
/// /metrics carries user names and spend: with Gateway:Metrics:Port it leaves the gateway's port for a port of its own
/// that answers nothing else, and with Gateway:Metrics:Key it needs a bearer token.
/// </summary>
public sealed class MetricsExposureTests : IAsyncLifetime
{
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync() => _mock = await MockLlmServer.StartAsync();

    public async Task DisposeAsync() => await _mock.DisposeAsync();

    [Fact]
    public async Task MetricsPort_ServesMetricsThereOnly_AndNothingElseThere()
    {
        var port = FreePort();
        await using var gateway = await GatewayServer.StartAsync(WithMetrics(TestConfigs.Default(_mock.BaseUrl), $"\"Port\": {port}, \"Probes\": true"));
        using var metricsClient = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        using (var call = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), TestConfigs.Key)))
        {
            Assert.Equal(HttpStatusCode.OK, call.StatusCode);
        }

        using var onPublic = await gateway.Client.GetAsync("/metrics");
        using var onMetrics = await metricsClient.GetAsync("/metrics");
        using var llmOnMetrics = await metricsClient.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), TestConfigs.Key));
        using var probe = await metricsClient.GetAsync("/readyz");
        using var spoofedHost = new HttpRequestMessage(HttpMethod.Get, "/metrics") { Headers = { Host = $"127.0.0.1:{port}" } };
        using var spoofed = await gateway.Client.SendAsync(spoofedHost);

        Assert.Equal(HttpStatusCode.NotFound, onPublic.StatusCode);
        Assert.Equal(HttpStatusCode.OK, onMetrics.StatusCode);
        Assert.Contains("llm_gateway_requests_total", await onMetrics.Content.ReadAsStringAsync());
        Assert.Equal(HttpStatusCode.NotFound, llmOnMetrics.StatusCode);
        Assert.Equal(HttpStatusCode.OK, probe.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, spoofed.StatusCode); // the Host header does not choose the port
    }

    [Fact]
    public async Task MetricsKey_RequiresTheBearerToken()
    {
        await using var gateway = await GatewayServer.StartAsync(WithMetrics(TestConfigs.Default(_mock.BaseUrl), "\"Key\": \"metrics-secret-1\""));

        using var anonymous = await gateway.Client.GetAsync("/metrics");
        using var wrong = await gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/metrics") { Headers = { Authorization = new("Bearer", "nope") } });
        using var right = await gateway.Client.SendAsync(new HttpRequestMessage(HttpMethod.Get, "/metrics") { Headers = { Authorization = new("Bearer", "metrics-secret-1") } });

        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, wrong.StatusCode);
        Assert.Equal(HttpStatusCode.OK, right.StatusCode);
        Assert.Contains("llm_gateway_", await right.Content.ReadAsStringAsync());
    }

    private static string WithMetrics(string config, string metrics)
    {
        var at = config.IndexOf("\"Gateway\": {", StringComparison.Ordinal);
        Assert.True(at >= 0);
        at += "\"Gateway\": {".Length;
        return config[..at] + $"\n    \"Metrics\": {{ {metrics} }}," + config[at..];
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
