using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.EndToEnd.Tests.Anthropic;

/// <summary>Anthropic's 529 overloaded_error is handled like a 503: retried, counted by the circuit, and a reason to fall back.</summary>
public sealed class AnthropicResilienceTests : MessagesTestBase
{
    [Fact]
    public async Task Overloaded529_OnEveryAttempt_FallsBackToTheNextModel()
    {
        using var response = await SendAsync(UserTurn("claude-flaky", "fall back please"),
            ("X-Mock-Status", "529"), ("X-Mock-Fail-Times", "3"), ("X-Mock-Scenario", "flaky-529"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("mock-claude", response.Headers.GetValues("X-Gateway-Model").Single());
        Assert.Equal("fallback", response.Headers.GetValues("X-Gateway-Downgrade").Single());
        Assert.Equal("4", response.Headers.GetValues("X-Gateway-Attempts").Single());
        Assert.Equal(["claude-flaky", "claude-flaky", "claude-flaky", "mock-claude"], Mock.Log.Snapshot().Select(r => r.Model));
    }

    [Fact]
    public async Task Overloaded529s_OpenTheCircuit_ThenTheGatewayAnswers529Itself()
    {
        for (var i = 0; i < 2; i++)
        {
            using var failed = await SendAsync(UserTurn("claude-breaker", $"overloaded {i}"), ("X-Mock-Status", "529"));
            Assert.Equal(529, (int)failed.StatusCode);
        }

        var sent = Mock.Log.Count;
        using var response = await SendAsync(UserTurn("claude-breaker", "after"));

        Assert.Equal(529, (int)response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("overloaded_error", body.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Contains("circuit is open", body.RootElement.GetProperty("error").GetProperty("message").GetString());
        Assert.Equal(sent, Mock.Log.Count);
    }

    [Fact]
    public async Task StreamCutByTheProvider_EndsWithAnAnthropicErrorEvent_AndIsChargedForWhatWasDelivered()
    {
        using var response = await SendAsync(UserTurn("mock-claude", "one two three four five six", stream: true), ("X-Mock-Fail-After-Chunks", "2"), ("X-Run-Id", "cut-by-provider"));
        var body = await response.Content.ReadAsStringAsync();

        var last = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)[^1];
        Assert.StartsWith("event: error\ndata: ", last, StringComparison.Ordinal);
        using var error = JsonDocument.Parse(last["event: error\ndata: ".Length..]);
        Assert.Equal("error", error.RootElement.GetProperty("type").GetString());
        Assert.Equal("api_error", error.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("upstream_error", error.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Single(Mock.Log.Snapshot());
        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "the call record");
        Assert.Equal("StreamBroken", record.GetStructuredStateValue("Outcome"));
        Assert.True(long.Parse(record.GetStructuredStateValue("OutputTokens")!, System.Globalization.CultureInfo.InvariantCulture) >= 2);
    }

    [Fact]
    public async Task UnexpectedException_OnMessagesRoute_IsAnthropicShaped500_WithTheRequestId()
    {
        await using var gateway = await GatewayServer.StartAsync(Config(Mock.BaseUrl), services: s => s.AddSingleton<IHttpForwarder>(new ThrowingForwarder()));

        using var response = await gateway.Client.SendAsync(Http.Post("/v1/messages", UserTurn("mock-claude", "hi"), key: null,
            ("x-api-key", TestConfigs.Key), ("X-Request-Id", "req-anthropic-500")));

        Assert.Equal(HttpStatusCode.InternalServerError, response.StatusCode);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("error", body.RootElement.GetProperty("type").GetString());
        Assert.Equal("api_error", body.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal("internal_error", body.RootElement.GetProperty("error").GetProperty("code").GetString());
        Assert.Equal("req-anthropic-500", body.RootElement.GetProperty("request_id").GetString());
        Assert.Equal("true", response.Headers.GetValues("x-should-retry").Single());
    }

    private Task<HttpResponseMessage> SendAsync(string body, params (string Name, string Value)[] headers) =>
        Gateway.Client.SendAsync(Http.Post("/v1/messages", body, key: null, [("x-api-key", TestConfigs.Key), .. headers]));

    private sealed class ThrowingForwarder : IHttpForwarder
    {
        public ValueTask<ForwarderError> SendAsync(HttpContext context, string destinationPrefix, HttpMessageInvoker httpClient, ForwarderRequestConfig requestConfig, HttpTransformer transformer) =>
            throw new InvalidOperationException("relay bug");

        public ValueTask<ForwarderError> SendAsync(HttpContext context, string destinationPrefix, HttpMessageInvoker httpClient, ForwarderRequestConfig requestConfig, HttpTransformer transformer, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("relay bug");
    }
}
