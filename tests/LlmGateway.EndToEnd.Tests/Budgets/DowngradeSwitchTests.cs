using System.Net;
using LlmGateway.Budgets;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// A downgrade past DowngradeAt switches the reservation without letting go of the one held: a concurrent call that
/// takes the budget the moment anything is released (played by a store that does exactly that) cannot make the caller
/// lose the call it was admitted for when the cheaper model cannot take it.
/// </summary>
public sealed class DowngradeSwitchTests : IAsyncLifetime
{
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync() => _mock = await MockLlmServer.StartAsync();

    public async Task DisposeAsync() => await _mock.DisposeAsync();

    [Fact]
    public async Task FailedDowngrade_KeepsTheRequestedModelsAdmission()
    {
        var store = new CompetingStore(new InMemoryAdmissionStore(new AdmissionStoreOptions(), TimeProvider.System));
        await using var gateway = await GatewayServer.StartAsync(Config(_mock.BaseUrl), services: s => s.AddSingleton<IAdmissionStore>(store));

        // A first call spends $0.016 of thrifty's $0.03: past DowngradeAt 0.5 from now on.
        using (var first = await gateway.Client.SendAsync(Http.Post(
            "/v1/chat/completions", Http.Chat(model: "premium", extra: ",\"max_tokens\":16"), "sk-thrifty", ("X-Mock-Usage-Completion", "16"))))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            Assert.Equal("premium", first.Headers.GetValues("X-Gateway-Model").Single());
        }

        // The second reserves $0.01 more (fits: $0.026); the downgrade to narrow fails (context 5). Had the $0.01 been
        // let go of, the competitor would hold it and premium no longer fit ($0.036 > $0.03).
        using var response = await gateway.Client.SendAsync(Http.Post(
            "/v1/chat/completions",
            Http.Chat(model: "premium", content: new string('x', 200), extra: ",\"max_tokens\":10"),
            "sk-thrifty",
            ("X-Mock-Usage-Completion", "10")));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("premium", response.Headers.GetValues("X-Gateway-Model").Single());
        Assert.Equal(0, store.CompetitorsAdmitted); // nothing was released before the switch was decided
    }

    private static string Config(string mockBaseUrl) => $$"""
    {
      "Gateway": {
        "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
        "Models": {
          "premium": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DowngradeTo": "narrow" },
          "narrow": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1, "ContextWindow": 5 }
        },
        "Keys": [ { "Key": "sk-thrifty", "User": "thrifty" } ],
        "Users": { "thrifty": { "Budget": { "Usd": 0.03, "Period": "Day" }, "DowngradeAt": 0.5 } }
      }
    }
    """;

    /// <summary>The in-memory store, plus a competitor that reserves what any release gives back, at once.</summary>
    private sealed class CompetingStore(IAdmissionStore inner) : IAdmissionStore
    {
        private AdmissionRequest? _last;

        public int CompetitorsAdmitted { get; private set; }

        public ValueTask<AdmissionResult> ReserveAsync(AdmissionRequest request, CancellationToken cancellationToken = default)
        {
            _last = request;
            return inner.ReserveAsync(request, cancellationToken);
        }

        public async ValueTask ReleaseAsync(Reservation reservation, CancellationToken cancellationToken = default)
        {
            await inner.ReleaseAsync(reservation, cancellationToken);
            if (_last is { } last && (await inner.ReserveAsync(last with { RequestHash = null }, cancellationToken)).IsAdmitted)
            {
                CompetitorsAdmitted++;
            }
        }

        public ValueTask SettleAsync(Reservation reservation, decimal actualUsd, long actualTokens, CancellationToken cancellationToken = default) =>
            inner.SettleAsync(reservation, actualUsd, actualTokens, cancellationToken);

        public ValueTask HaltRunAsync(string runId, CancellationToken cancellationToken = default) => inner.HaltRunAsync(runId, cancellationToken);

        public ValueTask ResumeRunAsync(string runId, CancellationToken cancellationToken = default) => inner.ResumeRunAsync(runId, cancellationToken);

        public ValueTask HaltUserAsync(string user, CancellationToken cancellationToken = default) => inner.HaltUserAsync(user, cancellationToken);

        public ValueTask ResumeUserAsync(string user, CancellationToken cancellationToken = default) => inner.ResumeUserAsync(user, cancellationToken);

        public ValueTask<RunBudgetState?> GetRunStateAsync(string runId, CancellationToken cancellationToken = default) => inner.GetRunStateAsync(runId, cancellationToken);

        public ValueTask<UserBudgetState> GetUserStateAsync(string user, string periodKey, CancellationToken cancellationToken = default) =>
            inner.GetUserStateAsync(user, periodKey, cancellationToken);

        public ValueTask<bool> PingAsync(CancellationToken cancellationToken = default) => inner.PingAsync(cancellationToken);
    }
}
