using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// A healthy Redis never produces store_unavailable: a burst on replicas just started, on a Redis whose script cache
/// is empty (the issue saw two 503 in 40 calls: calls queued behind the first batch's
/// script load ran out their timeout while they waited).
/// </summary>
[RequiresRedisServer]
public sealed class RedisColdStartTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>
{
    [RedisFact]
    public async Task FreshReplicas_FortyCallBurst_GetsNo503()
    {
        if (!redis.IsRunning)
        {
            redis.Start();
        }

        Assert.Equal("+OK", redis.TryCommand("SCRIPT FLUSH"));
        await using var mock = await MockLlmServer.StartAsync();
        // A 1 s store timeout, as RedisReplicaTests: on this shared 2-core machine (load ~24 while other suites run) a
        // healthy Redis can take 200 ms to answer; what is tested is that neither the script load nor the wait behind
        // the batch in flight counts against it.
        var config = TestConfigs.Budgets(mock.BaseUrl, redis.ConnectionString, storeTimeout: "00:00:01");
        await using var a = await GatewayServer.StartAsync(config);
        await using var b = await GatewayProcess.StartAsync(config);
        await a.WaitReadyAsync();

        var responses = await Task.WhenAll(Enumerable.Range(0, 40).Select(i => (i % 2 == 0 ? a.Client : b.Client).SendAsync(
            Http.Post("/v1/chat/completions", Http.Chat(content: $"burst {i}"), "sk-runner", ("X-Run-Id", "run-burst-" + (i % 4))))));

        var reasons = a.Logs.GetSnapshot().Where(r => r.Id.Name == "StoreUnavailable").Select(r => r.Message).ToList();
        Assert.True(!responses.Any(r => r.StatusCode == HttpStatusCode.ServiceUnavailable),
            $"{responses.Count(r => r.StatusCode == HttpStatusCode.ServiceUnavailable)} of 40 got 503; replica A logged: {string.Join(" | ", reasons)}");
        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
    }
}
