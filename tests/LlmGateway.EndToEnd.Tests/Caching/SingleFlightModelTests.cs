using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>
/// Identical misses wait for the first one in flight (single-flight), but only take its answer when it came from the
/// model they asked for: a leader that fell back or was downgraded is not an answer for them, and never for a
/// waiter that sent X-Gateway-No-Downgrade. Those waiters go upstream themselves, through their own admission.
/// </summary>
public sealed class SingleFlightModelTests : IAsyncLifetime
{
    private const string Path = "/v1/chat/completions";
    private const string Plain = "sk-sf-plain";
    private const string Thrifty = "sk-sf-thrifty";

    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(Config(_mock.BaseUrl));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
    }

    [Fact]
    public async Task LeaderFellBack_WaitersGoUpstreamForTheModelTheyAskedFor()
    {
        var body = Http.Chat(model: "big", content: "fallback together", extra: ",\"temperature\":0,\"max_tokens\":10");
        // The leader's first upstream answer (big) is a 503 after 3 s; its fallback (small) answers after 3 s more.
        var leader = SendAsync(body, Plain,
            ("X-Mock-Status", "503"), ("X-Mock-Fail-Times", "1"), ("X-Mock-Scenario", Guid.NewGuid().ToString("N")), ("X-Mock-Latency-Ms", "3000"));
        await Http.EventuallyAsync(() => _mock.Log.CountFor(Path) >= 1 ? "sent" : null, "the leader upstream");

        // Identical requests while the leader is in flight: they join its flight.
        var waiters = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => SendAsync(body, Plain)));
        var first = await leader;

        Assert.Equal((HttpStatusCode.OK, "small", "fallback"), (first.Status, first.Model, first.Downgrade));
        Assert.All(waiters, w => Assert.Equal((HttpStatusCode.OK, "big", null, "MISS"), (w.Status, w.Model, w.Downgrade, w.Cache)));
        // big (503), small (the leader's fallback), then each waiter's own call to big.
        Assert.Equal(["big", "small", "big", "big", "big", "big"], _mock.Log.Snapshot().Select(r => r.Model));
    }

    [Fact]
    public async Task LeaderDowngradedByBudget_NoDowngradeWaiterGetsTheRequestedModel_OthersTheirOwnAdmissionsChoice()
    {
        // $0.01 of thrifty's $0.05: past DowngradeAt 0.1, so its next calls to big are served by small.
        using (var prime = await _gateway.Client.SendAsync(Http.Post(Path, Http.Chat(model: "big", content: "prime", extra: ",\"max_tokens\":10"), Thrifty, ("X-Mock-Usage-Completion", "10"))))
        {
            Assert.Equal("big", prime.Headers.GetValues("X-Gateway-Model").Single());
        }

        var body = Http.Chat(model: "big", content: "downgrade together", extra: ",\"temperature\":0,\"max_tokens\":10");
        var leader = SendAsync(body, Thrifty, ("X-Mock-Latency-Ms", "3000"));
        await Http.EventuallyAsync(() => _mock.Log.CountFor(Path) >= 2 ? "sent" : null, "the leader upstream");

        var strict = SendAsync(body, Thrifty, ("X-Gateway-No-Downgrade", "true"));
        var lenient = SendAsync(body, Thrifty);
        var first = await leader;

        Assert.Equal((HttpStatusCode.OK, "small", "budget"), (first.Status, first.Model, first.Downgrade));
        Assert.Equal((HttpStatusCode.OK, "big", null, "MISS"), ((await strict).Status, (await strict).Model, (await strict).Downgrade, (await strict).Cache));
        // Without the header the waiter's own admission downgrades it too: small, from its own upstream call.
        Assert.Equal((HttpStatusCode.OK, "small", "budget", "MISS"), ((await lenient).Status, (await lenient).Model, (await lenient).Downgrade, (await lenient).Cache));
        Assert.Equal(4, _mock.Log.CountFor(Path));
    }

    [Fact]
    public async Task LeaderServedTheRequestedModel_WaitersShareItsAnswer()
    {
        var body = Http.Chat(model: "big", content: "plain together", extra: ",\"temperature\":0,\"max_tokens\":10");
        var leader = SendAsync(body, Plain, ("X-Mock-Latency-Ms", "3000"));
        await Http.EventuallyAsync(() => _mock.Log.CountFor(Path) >= 1 ? "sent" : null, "the leader upstream");

        var waiters = await Task.WhenAll(Enumerable.Range(0, 3).Select(_ => SendAsync(body, Plain, ("X-Gateway-No-Downgrade", "true"))));
        var first = await leader;

        Assert.Equal((HttpStatusCode.OK, "big", "MISS"), (first.Status, first.Model, first.Cache));
        Assert.All(waiters, w => Assert.Equal((HttpStatusCode.OK, "big", "HIT", first.Body), (w.Status, w.Model, w.Cache, w.Body)));
        Assert.Equal(1, _mock.Log.CountFor(Path));
    }

    private async Task<(HttpStatusCode Status, string? Model, string? Downgrade, string? Cache, string Body)> SendAsync(string body, string key, params (string, string)[] headers)
    {
        using var response = await _gateway.Client.SendAsync(Http.Post(Path, body, key, headers));
        return (response.StatusCode, Header(response, "X-Gateway-Model"), Header(response, "X-Gateway-Downgrade"), Header(response, "X-Gateway-Cache"),
            await response.Content.ReadAsStringAsync());
    }

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.Single() : null;

    private static string Config(string mockBaseUrl) => $$"""
    {
      "Gateway": {
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
        "Models": {
          "big": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DowngradeTo": "small", "Fallbacks": ["small"] },
          "small": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1 }
        },
        "Keys": [ { "Key": "{{Plain}}", "User": "plain" }, { "Key": "{{Thrifty}}", "User": "thrifty" } ],
        "Users": { "thrifty": { "Budget": { "Usd": 0.05, "Period": "Day" }, "DowngradeAt": 0.1 } },
        "Cache": { "Enabled": true },
        "Resilience": { "MaxAttempts": 1, "AttemptTimeout": "00:00:10" }
      }
    }
    """;
}
