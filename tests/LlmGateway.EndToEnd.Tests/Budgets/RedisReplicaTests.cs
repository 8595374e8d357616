using System.Diagnostics;
using System.Net;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// Two gateway processes on one real redis-server enforce one set of limits: replica A runs inside the
/// test process, replica B is a separate <c>dotnet LlmGateway.dll</c> process sharing nothing with it but Redis.
/// </summary>
[RequiresRedisServer]
public sealed class RedisReplicaTests : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly RedisServerFixture _redis;
    private MockLlmServer _mock = null!;
    private GatewayServer _a = null!;
    private GatewayProcess _b = null!;

    public RedisReplicaTests(RedisServerFixture redis) => _redis = redis;

    public async Task InitializeAsync()
    {
        if (!_redis.IsRunning)
        {
            _redis.Start();
        }

        _mock = await MockLlmServer.StartAsync();

        // Both replicas get the same config file content, hence the same key prefix: one shared set of limits. What
        // these tests check is the sharing, not the store timeout: 200 concurrent calls from two replicas on two cores
        // must not be refused store_unavailable because the machine is busy (they were, at 200 ms, under load).
        var config = TestConfigs.Budgets(_mock.BaseUrl, _redis.ConnectionString, storeTimeout: "00:00:01");
        _a = await GatewayServer.StartAsync(config);
        _b = await GatewayProcess.StartAsync(config);

        // As a load balancer would: no traffic before a replica reports ready (GatewayProcess waits by itself).
        await _a.WaitReadyAsync();
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
        await _mock.DisposeAsync();
    }

    [RedisFact]
    public async Task TwoReplicas_CombinedRpmLimit_AdmitsExactlyN()
    {
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 10; i++)
        {
            var client = i % 2 == 0 ? _a.Client : _b.Client;
            using var response = await client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: $"rpm {i}"), "sk-rpm"));
            statuses.Add(response.StatusCode);
        }

        Assert.Equal(5, statuses.Count(s => s == HttpStatusCode.OK));
        Assert.Equal(5, statuses.Count(s => s == HttpStatusCode.TooManyRequests));
    }

    [RedisFact]
    public async Task TwoReplicas_ShareOneBudget_ConcurrentlyAdmitExactlyWhatFits()
    {
        var responses = await Task.WhenAll(Enumerable.Range(0, 200).Select(i => (i % 2 == 0 ? _a.Client : _b.Client).SendAsync(BudgetCalls.Metered("sk-spender", content: $"shared {i}"))));

        Assert.Equal(100, responses.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(100, responses.Count(r => r.StatusCode == HttpStatusCode.TooManyRequests));

        // Each replica alone would have admitted 100 of its own 100: the shared total is the proof.
        var spent = await BudgetCalls.SettledAsync(_b.Client, "/admin/users/spender");
        Assert.Equal(1.00m, spent.GetProperty("spent_usd").GetDecimal());
    }

    [RedisFact]
    public async Task HaltOnOneReplica_BlocksTheRunOnTheOther()
    {
        (await _a.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Post, "/admin/runs/run-shared-halt/halt"))).EnsureSuccessStatusCode();

        using var onB = await _b.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-runner", ("X-Run-Id", "run-shared-halt")));

        await Http.AssertErrorAsync(onB, 403, "run_halted", shouldRetry: false);
    }

    [RedisFact]
    public async Task RedisKilled_DenyPolicy_AnswersStoreUnavailableQuickly_ThenRecovers()
    {
        using (var ok = await _a.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-runner")))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        _redis.Stop();
        try
        {
            var clock = Stopwatch.StartNew();
            using var denied = await _a.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-runner"));
            clock.Stop();

            await Http.AssertErrorAsync(denied, 503, "store_unavailable", shouldRetry: true);
            Assert.True(denied.Headers.RetryAfter is not null);

            // Bounded by the store timeout, not a hang (a generous bound: this is a liveness check, not a benchmark).
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"took {clock.Elapsed}");
            using var ready = await _a.Client.GetAsync("/readyz");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        }
        finally
        {
            _redis.Start();
        }

        var recovered = await Http.EventuallyAsync(async () =>
        {
            using var response = await _a.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-runner"));
            return response.StatusCode == HttpStatusCode.OK ? (HttpStatusCode?)response.StatusCode : null;
        }, "recovery after Redis came back", timeoutMs: 20000);
        Assert.Equal(HttpStatusCode.OK, recovered);
    }

    [RedisFact]
    public async Task RedisKilled_AllowPolicy_LetsCallsThrough()
    {
        await using var allowing = await GatewayServer.StartAsync(TestConfigs.Budgets(_mock.BaseUrl, _redis.ConnectionString, onUnavailable: "Allow"));
        await allowing.WaitReadyAsync();
        _redis.Stop();
        try
        {
            using var response = await allowing.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), "sk-runner"));

            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains(allowing.Logs.GetSnapshot(), r => r.Id.Name == "StoreUnavailable");
        }
        finally
        {
            _redis.Start();
        }
    }
}
