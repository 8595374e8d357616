using System.Net;
using LlmGateway.Budgets;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.EndToEnd.Tests.Errors;

/// <summary>
/// Pieces that throw what nobody expected (a store's CROSSSLOT, a bug in the relay): the caller always gets a 500
/// internal_error in OpenAI's shape with the request id, and the log has one error line with the exception.
/// </summary>
public sealed class UnexpectedFailureTests : IAsyncLifetime
{
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync() => _mock = await MockLlmServer.StartAsync();

    public async Task DisposeAsync() => await _mock.DisposeAsync();

    [Fact]
    public async Task ThrowingAdmissionStore_Is500InternalError_WithTheRequestId_AndOneLogLine()
    {
        await using var gateway = await GatewayServer.StartAsync(
            TestConfigs.Budgets(_mock.BaseUrl),
            services: s => s.AddSingleton<IAdmissionStore>(new ThrowingStore()));

        await AssertInternalErrorAsync(gateway, "sk-spender", "CROSSSLOT Keys in request don't hash to the same slot");
        Assert.Equal(0, _mock.Log.Count);
    }

    [Fact]
    public async Task ThrowingForwarder_Is500InternalError_WithTheRequestId_AndOneLogLine()
    {
        await using var gateway = await GatewayServer.StartAsync(
            TestConfigs.Default(_mock.BaseUrl),
            services: s => s.AddSingleton<IHttpForwarder>(new ThrowingForwarder()));

        await AssertInternalErrorAsync(gateway, TestConfigs.Key, "relay bug");
    }

    private static async Task AssertInternalErrorAsync(GatewayServer gateway, string key, string exceptionText)
    {
        using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), key, ("X-Request-Id", "req-unexpected-1")));

        await Http.AssertErrorAsync(response, 500, "internal_error", shouldRetry: true);
        Assert.Equal("req-unexpected-1", response.Headers.GetValues("X-Request-Id").Single());
        Assert.Contains("req-unexpected-1", (await Http.ErrorOf(response)).GetProperty("message").GetString());
        var lines = await Http.EventuallyAsync(
            () => gateway.Logs.GetSnapshot().Where(l => l.Id.Name == "Unhandled").ToList() is { Count: > 0 } found ? found : null,
            "the Unhandled log line");
        var line = Assert.Single(lines);
        Assert.Contains(exceptionText, line.Exception?.ToString() ?? string.Empty);
    }

    private sealed class ThrowingStore : IAdmissionStore
    {
        private static InvalidOperationException Boom() => new("CROSSSLOT Keys in request don't hash to the same slot");

        public ValueTask<AdmissionResult> ReserveAsync(AdmissionRequest request, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask SettleAsync(Reservation reservation, decimal actualUsd, long actualTokens, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask ReleaseAsync(Reservation reservation, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask HaltRunAsync(string runId, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask ResumeRunAsync(string runId, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask HaltUserAsync(string user, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask ResumeUserAsync(string user, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask<RunBudgetState?> GetRunStateAsync(string runId, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask<UserBudgetState> GetUserStateAsync(string user, string periodKey, CancellationToken cancellationToken = default) => throw Boom();

        public ValueTask<bool> PingAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(true);
    }

    private sealed class ThrowingForwarder : IHttpForwarder
    {
        public ValueTask<ForwarderError> SendAsync(HttpContext context, string destinationPrefix, HttpMessageInvoker httpClient, ForwarderRequestConfig requestConfig, HttpTransformer transformer) =>
            throw new InvalidOperationException("relay bug");

        public ValueTask<ForwarderError> SendAsync(HttpContext context, string destinationPrefix, HttpMessageInvoker httpClient, ForwarderRequestConfig requestConfig, HttpTransformer transformer, CancellationToken cancellationToken) =>
            throw new InvalidOperationException("relay bug");
    }
}
