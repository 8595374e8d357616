using LlmGateway.Configuration;
using LlmGateway.Deployments;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Deployments;

/// <summary>The deployments' Rpm/Tpm windows: in memory, and the Redis store against it on a real redis-server.</summary>
[RequiresRedisServer]
public sealed class DeploymentRateStoreTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>
{
    private readonly FakeTimeProvider _time = new(DateTimeOffset.Parse("2026-01-01T00:00:00.250Z", System.Globalization.CultureInfo.InvariantCulture));

    [Fact]
    public async Task InMemory_RefusesPastRpm_UntilTheOldestSecondLeaves()
    {
        var store = new InMemoryDeploymentRateStore(_time);
        var deployment = Deployment(rpm: 3, tpm: 0);

        for (var i = 0; i < 3; i++)
        {
            Assert.True((await store.TryTakeAsync(deployment, 10, default)).Taken);
            _time.Advance(TimeSpan.FromSeconds(10));
        }

        var refused = await store.TryTakeAsync(deployment, 10, default);
        Assert.False(refused.Taken);

        // The first call was taken at second 0 and leaves at 61 s; now is 30.25 s.
        Assert.Equal(TimeSpan.FromMilliseconds(30_750), refused.RetryAfter);
        _time.Advance(refused.RetryAfter!.Value);
        Assert.True((await store.TryTakeAsync(deployment, 10, default)).Taken);
    }

    [Fact]
    public async Task InMemory_Tpm_CountsWhatWasUsed_AfterSettlement()
    {
        var store = new InMemoryDeploymentRateStore(_time);
        var deployment = Deployment(rpm: 0, tpm: 1000);

        var first = await store.TryTakeAsync(deployment, 900, default);
        Assert.False((await store.TryTakeAsync(deployment, 900, default)).Taken);
        await store.SettleAsync(deployment, first.Ticket, 100);
        Assert.True((await store.TryTakeAsync(deployment, 900, default)).Taken);
        Assert.Null((await store.TryTakeAsync(deployment, 5000, default)).RetryAfter);
    }

    /// <summary>
    /// The same random sequence of takes, settlements and clock moves against both stores gives the same answers:
    /// the Redis store states the window's rules once, through the admission scripts, and they are the in-memory rules.
    /// </summary>
    [RedisFact]
    public async Task Redis_AnswersAsInMemory_OverARandomSequence()
    {
        using var connection = new RedisConnection(redis.ConnectionString, TimeSpan.FromSeconds(2));
        for (var seed = 1; seed <= 8; seed++)
        {
            var memory = new InMemoryDeploymentRateStore(_time);
            var shared = new RedisDeploymentRateStore(connection, $"llmgw-{Guid.NewGuid():N}:", TimeSpan.FromSeconds(5), _time);
            var random = new Random(seed);
            var deployment = Deployment(rpm: 1 + random.Next(12), tpm: random.Next(2) == 0 ? 0 : 200 + random.Next(2000));
            var tickets = new List<(DeploymentRateTicket Memory, DeploymentRateTicket Redis)>();
            for (var step = 0; step < 300; step++)
            {
                var action = random.Next(10);
                if (action < 6)
                {
                    var tokens = random.Next(400);
                    var a = await memory.TryTakeAsync(deployment, tokens, default);
                    var b = await shared.TryTakeAsync(deployment, tokens, default);
                    Assert.True((a.Taken, a.RetryAfter) == (b.Taken, b.RetryAfter), $"seed {seed} step {step}: memory {a}, redis {b}");
                    if (a.Taken)
                    {
                        tickets.Add((a.Ticket, b.Ticket));
                    }
                }
                else if (action < 8 && tickets.Count > 0)
                {
                    var (a, b) = tickets[random.Next(tickets.Count)];
                    var used = random.Next(400);
                    await memory.SettleAsync(deployment, a, used);
                    await shared.SettleAsync(deployment, b, used);
                }
                else
                {
                    _time.Advance(TimeSpan.FromMilliseconds(random.Next(8000)));
                }
            }
        }
    }

    [RedisFact]
    public async Task Redis_Unreachable_Throws_StoreUnavailable()
    {
        using var connection = new RedisConnection("127.0.0.1:1", TimeSpan.FromMilliseconds(200));
        var store = new RedisDeploymentRateStore(connection, "llmgw:", TimeSpan.FromMilliseconds(300), _time);
        await Assert.ThrowsAsync<LlmGateway.Budgets.AdmissionStoreUnavailableException>(async () => await store.TryTakeAsync(Deployment(5, 0), 1, default));
    }

    private static DeploymentRoute Deployment(int rpm, int tpm)
    {
        var options = new GatewayOptions
        {
            Providers = { ["p"] = new ProviderOptions { BaseUrl = "http://127.0.0.1:9/v1" } },
            Models = { ["m"] = new ModelOptions { InputUsdPerMTok = 1, OutputUsdPerMTok = 1, Deployments = [new DeploymentOptions { Provider = "p", Rpm = rpm, Tpm = tpm }] } },
        };
        return new GatewayConfig(options, "v").Models["m"].Deployments[0];
    }
}
