using System.Net;
using LlmGateway.Deployments;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.DependencyInjection;

namespace LlmGateway.EndToEnd.Tests.Deployments;

/// <summary>
/// One model on two deployments, each a real MockLlm on its own 127.0.0.1 port, through a real gateway (and, for the
/// shared Rpm window, two gateways on one real redis-server): the split by weight, least-busy, a failing deployment's
/// circuit, a deployment's own Rpm across replicas, and a sticky run.
/// </summary>
[RequiresRedisServer]
public sealed class DeploymentTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private const string Path = "/v1/chat/completions";
    private MockLlmServer _a = null!;
    private MockLlmServer _b = null!;

    public async Task InitializeAsync()
    {
        _a = await MockLlmServer.StartAsync();
        _b = await MockLlmServer.StartAsync();
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
    }

    /// <remarks>
    /// The gateway draws from a seeded Random, so the split is one fixed draw and cannot flake. Were it unseeded:
    /// 400 draws at p = 0.75 have sd 8.7, so ±30 is 3.5 sd, a two-sided miss of ~5e-4 per run. Ignoring the weights
    /// (200:200) fails it.
    /// </remarks>
    [RedisFact]
    public async Task Weighted_3To1_SplitsFourHundredCallsWithinTenPercent()
    {
        await using var gateway = await GatewayServer.StartAsync(Config("""
            "Deployments": [ { "Provider": "pa", "Weight": 3 }, { "Provider": "pb", "Weight": 1 } ]
            """), services: Seeded(400));

        var served = new Dictionary<string, int>(StringComparer.Ordinal) { ["pa"] = 0, ["pb"] = 0 };
        for (var i = 0; i < 400; i++)
        {
            using var response = await gateway.Client.SendAsync(Http.Post(Path, Http.Chat("duo")));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            served[Deployment(response)]++;
        }

        Assert.InRange(served["pa"], 270, 330);
        Assert.Equal((served["pa"], served["pb"]), (_a.Log.CountFor(Path), _b.Log.CountFor(Path)));
    }

    /// <remarks>
    /// Weights 3:1 so that the weighted choice (~15:5) fails it. The gauge is read while all 20 calls are in flight (each
    /// takes 6 s at the mock): nothing changes then, so one scrape is a consistent view.
    /// </remarks>
    [RedisFact]
    public async Task LeastBusy_KeepsInFlightWithinOne_UnderTwentyConcurrentSlowCalls()
    {
        await using var gateway = await GatewayServer.StartAsync(Config("""
            "Strategy": "least-busy",
            "Deployments": [ { "Provider": "pa", "Weight": 3 }, { "Provider": "pb", "Weight": 1 } ]
            """, attemptTimeout: "00:00:30"));

        var calls = Enumerable.Range(0, 20).Select(async _ =>
        {
            using var response = await gateway.Client.SendAsync(Http.Post(Path, Http.Chat("duo"), TestConfigs.Key, ("X-Mock-Latency-Ms", "6000")));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return Deployment(response);
        }).ToArray();

        var (a, b) = await Http.EventuallyAsync(async () =>
        {
            var scrape = await gateway.Client.GetStringAsync("/metrics");
            var a = Gauge(scrape, "pa");
            var b = Gauge(scrape, "pb");
            return a + b == 20 ? ((int, int)?)(a, b) : null;
        }, "all 20 calls in flight", timeoutMs: 5500);
        Assert.InRange(a - b, -1, 1);

        var served = await Task.WhenAll(calls);
        Assert.InRange(served.Count(d => d == "pa") - served.Count(d => d == "pb"), -1, 1);
    }

    /// <remarks>
    /// pb answers every call with 500 (a provider header the gateway adds). Its circuit opens after MinimumThroughput (4)
    /// failed attempts; every call before that was retried on pa with no wait, and every call after goes to pa in one
    /// attempt. A chooser that ignored the open circuit would send later calls to pb first (2 attempts each).
    /// </remarks>
    [RedisFact]
    public async Task FailingDeployment_CircuitOpens_AndEveryLaterCallSucceedsOnTheOther()
    {
        await using var gateway = await GatewayServer.StartAsync(Config("""
            "Deployments": [ { "Provider": "pa" }, { "Provider": "pb" } ]
            """, pbHeaders: """{ "X-Mock-Status": "500" }"""), services: Seeded(7));

        var attempts = new List<(string Deployment, int Attempts)>();
        for (var i = 0; i < 40; i++)
        {
            using var response = await gateway.Client.SendAsync(Http.Post(Path, Http.Chat("duo")));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            attempts.Add((Deployment(response), int.Parse(response.Headers.GetValues("X-Gateway-Attempts").Single(), System.Globalization.CultureInfo.InvariantCulture)));
        }

        Assert.Equal(4, _b.Log.CountFor(Path));
        Assert.All(attempts, a => Assert.Equal("pa", a.Deployment));
        Assert.Equal(40 + 4, attempts.Sum(a => a.Attempts));
        var opened = attempts.FindLastIndex(a => a.Attempts == 2);
        Assert.All(attempts.Skip(opened + 1), a => Assert.Equal(1, a.Attempts));
        var scrape = await gateway.Client.GetStringAsync("/metrics");
        Assert.Contains("llm_gateway_circuit_state{upstream=\"pb/duo\"} 2", scrape, StringComparison.Ordinal);
        Assert.Contains("llm_gateway_retries_total{deployment=\"pb\",reason=\"500\",upstream=\"pb/duo\"} 4", scrape, StringComparison.Ordinal);

        // No retry was spent on the open circuit: the choice skips it rather than trying it and moving on.
        Assert.DoesNotContain("reason=\"circuit_open\"", scrape, StringComparison.Ordinal);
    }

    /// <remarks>
    /// pb throttles every call with 429 and Retry-After: 30 s, longer than the gateway waits (MaxRetryWait 5 s). A 429
    /// does not open a circuit, so pb keeps getting first attempts; each is retried on pa at once. Waiting on the same
    /// deployment (the single-provider behaviour) would answer those calls 429.
    /// </remarks>
    [RedisFact]
    public async Task Throttled_Deployment_IsRetriedOnTheOther_WithoutWaiting()
    {
        await using var gateway = await GatewayServer.StartAsync(Config("""
            "Deployments": [ { "Provider": "pa" }, { "Provider": "pb" } ]
            """, pbHeaders: """{ "X-Mock-Status": "429", "X-Mock-Retry-After": "30" }"""), services: Seeded(11));

        for (var i = 0; i < 20; i++)
        {
            using var response = await gateway.Client.SendAsync(Http.Post(Path, Http.Chat("duo")));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("pa", Deployment(response));
        }

        Assert.InRange(_b.Log.CountFor(Path), 3, 17);
        Assert.Equal(20, _a.Log.CountFor(Path));
    }

    /// <remarks>
    /// Two gateways on one redis-server share the deployment's window: "limited" (weight 10) takes exactly its 30 calls
    /// a minute and "rest" every other. With per-replica windows each replica would allow 30 (60 in all).
    /// </remarks>
    [RedisFact]
    public async Task DeploymentRpm_IsNeverExceeded_AcrossTwoReplicasOnOneRedis()
    {
        if (!redis.IsRunning)
        {
            redis.Start();
        }

        var config = Config("""
            "Deployments": [ { "Name": "limited", "Provider": "pa", "Weight": 10, "Rpm": 30 }, { "Name": "rest", "Provider": "pb", "Weight": 1 } ]
            """, redis: redis.ConnectionString);
        await using var one = await GatewayServer.StartAsync(config, services: Seeded(1));
        await using var two = await GatewayServer.StartAsync(config, services: Seeded(2));
        await one.WaitReadyAsync();
        await two.WaitReadyAsync();

        var served = new Dictionary<string, int>(StringComparer.Ordinal) { ["limited"] = 0, ["rest"] = 0 };
        for (var i = 0; i < 90; i++)
        {
            using var response = await (i % 2 == 0 ? one : two).Client.SendAsync(Http.Post(Path, Http.Chat("duo")));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            served[Deployment(response)]++;
        }

        Assert.Equal(30, _a.Log.CountFor(Path));
        Assert.Equal((30, 60), (served["limited"], served["rest"]));
    }

    /// <remarks>
    /// A run's 12 calls stay on the deployment of its first; that deployment's server then goes away: the next call
    /// fails there once, is retried on the other (no wait), and the run's later calls stay there. Unsticky 1:1 calls
    /// would all land on one deployment with probability 2^-11.
    /// </remarks>
    [RedisFact]
    public async Task StickyRun_StaysOnItsDeployment_UntilItFails_ThenMovesOnce()
    {
        await using var gateway = await GatewayServer.StartAsync(Config("""
            "Sticky": "run",
            "Deployments": [ { "Provider": "pa" }, { "Provider": "pb" } ]
            """));

        var sequence = new List<string>();
        for (var i = 0; i < 12; i++)
        {
            sequence.Add(await RunCallAsync(gateway));
        }

        Assert.Single(sequence.Distinct());
        await (sequence[0] == "pa" ? _a : _b).DisposeAsync();
        for (var i = 0; i < 12; i++)
        {
            sequence.Add(await RunCallAsync(gateway));
        }

        Assert.Equal(1, sequence.Zip(sequence.Skip(1)).Count(pair => pair.First != pair.Second));
        Assert.NotEqual(sequence[0], sequence[^1]);

        // Another run is free to land anywhere; this one's pin never moved back.
        if (sequence[0] == "pa")
        {
            _a = await MockLlmServer.StartAsync();
        }
        else
        {
            _b = await MockLlmServer.StartAsync();
        }
    }

    /// <remarks>pb's price override (output $20/M instead of $2/M) is what its calls cost: 1000 output tokens, $0.002 vs $0.02.</remarks>
    [RedisFact]
    public async Task Cost_IsTheServingDeploymentsPrice_AndTheCallRecordNamesTheDeployment()
    {
        await using var gateway = await GatewayServer.StartAsync(Config("""
            "Deployments": [ { "Provider": "pa" }, { "Provider": "pb", "OutputUsdPerMTok": 20 } ]
            """), services: Seeded(5));

        var costs = new Dictionary<string, decimal>(StringComparer.Ordinal);
        for (var i = 0; i < 20 && costs.Count < 2; i++)
        {
            using var response = await gateway.Client.SendAsync(Http.Post(Path, Http.Chat("duo"), TestConfigs.Key, ("X-Mock-Usage-Prompt", "0"), ("X-Mock-Usage-Completion", "1000")));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            costs[Deployment(response)] = decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), System.Globalization.CultureInfo.InvariantCulture);

            // The call record names the deployment that served, as the response header does.
            var record = await Http.EventuallyAsync(() => gateway.Logs.CallFor(response.Headers.GetValues("X-Request-Id").Single()), "call record");
            Assert.Equal(Deployment(response), record.GetStructuredStateValue("Deployment"));
        }

        Assert.Equal(0.002m, costs["pa"]);
        Assert.Equal(0.02m, costs["pb"]);
    }

    /// <remarks>A running gateway takes a model from Provider to Deployments and back, and refuses a bad edit naming its key path.</remarks>
    [RedisFact]
    public async Task ConfigReload_SwitchesDeployments_AndRejectsABadOneByKeyPath()
    {
        await using var gateway = await GatewayServer.StartAsync(Config(""" "Provider": "pa" """));
        Assert.Equal("pa", await CallAsync());

        await gateway.WriteConfigAsync(Config(""" "Deployments": [ { "Name": "only-b", "Provider": "pb" } ] """));
        await Http.EventuallyAsync(async () => await CallAsync() == "only-b" ? (bool?)true : null, "the reload to Deployments");

        await gateway.WriteConfigAsync(Config(""" "Deployments": [ { "Provider": "pa", "Weight": 0 } ] """));
        var rejection = await Http.EventuallyAsync(() => gateway.Logs.GetSnapshot().FirstOrDefault(r => r.Id.Name == "ConfigRejected"), "the rejection log");
        Assert.Contains("Gateway:Models:duo:Deployments:0:Weight: must be positive", rejection.Message, StringComparison.Ordinal);
        Assert.Equal("only-b", await CallAsync());

        async Task<string> CallAsync()
        {
            using var response = await gateway.Client.SendAsync(Http.Post(Path, Http.Chat("duo")));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return Deployment(response);
        }
    }

    private static async Task<string> RunCallAsync(GatewayServer gateway)
    {
        using var response = await gateway.Client.SendAsync(Http.Post(Path, Http.Chat("duo"), TestConfigs.Key, ("X-Run-Id", "run-sticky")));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return Deployment(response);
    }

    private static string Deployment(HttpResponseMessage response) => response.Headers.GetValues("X-Gateway-Deployment").Single();

    private static int Gauge(string scrape, string deployment)
    {
        var prefix = $"llm_gateway_deployment_inflight{{deployment=\"{deployment}\",model=\"duo\"}} ";
        var line = scrape.Split('\n').FirstOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
        return line is null ? 0 : int.Parse(line[prefix.Length..], System.Globalization.CultureInfo.InvariantCulture);
    }

    private static Action<IServiceCollection> Seeded(int seed) => services => services.AddSingleton(new DeploymentRandom(new Random(seed)));

    private string Config(string model, string? redis = null, string pbHeaders = "{}", string attemptTimeout = "00:00:05") => $$"""
    {
      "Gateway": {
        "Redis": "{{redis ?? ""}}",
        "Store": { "KeyPrefix": "llmgw-{{Guid.NewGuid():N}}:", "Timeout": "00:00:02" },
        "Providers": {
          "pa": { "BaseUrl": "{{_a.BaseUrl}}/v1" },
          "pb": { "BaseUrl": "{{_b.BaseUrl}}/v1", "Headers": {{pbHeaders}} }
        },
        "Models": {
          "duo": { "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2, {{model}} }
        },
        "Keys": [ { "Key": "{{TestConfigs.Key}}", "User": "alice" } ],
        "Resilience": {
          "MaxAttempts": 3, "RetryBaseDelay": "00:00:00.020", "AttemptTimeout": "{{attemptTimeout}}", "MinRetriesPerSecond": 10, "MaxRetriesPerRun": 0,
          "CircuitBreaker": { "FailureRatio": 0.5, "SamplingDuration": "00:00:30", "MinimumThroughput": 4, "BreakDuration": "00:01:00" }
        }
      }
    }
    """;
}
