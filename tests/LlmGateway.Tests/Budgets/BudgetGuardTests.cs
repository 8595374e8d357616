using System.Security.Cryptography;
using System.Text;
using LlmGateway.Accounting;
using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Forwarding;
using LlmGateway.Identity;
using LlmGateway.Telemetry;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// Which prompt size admission reserves: the cheap bound far from every limit, the tokenizer's count where the
/// bound would be refused or is a large share of a limit. "gpt-4o" costs $1 per input token and nothing for
/// output, so a reservation's USD is its prompt tokens.
/// </summary>
public sealed class BudgetGuardTests : IDisposable
{
    private const string Prompt = "My order 48213 left the warehouse on Monday but the tracking page has not changed since. Can you tell me "
        + "whether it is delayed, what the usual transit time to Lyon is, and whether I can change the delivery address to my office?";

    private static readonly string Body = $$"""{"model":"gpt-4o","max_tokens":1,"messages":[{"role":"user","content":"{{Prompt}}"}]}""";

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 3, 12, 0, 0, TimeSpan.Zero));
    private readonly ServiceProvider _services = new ServiceCollection().AddMetrics().BuildServiceProvider();
    private readonly InMemoryAdmissionStore _store;
    private readonly BudgetGuard _guard;
    private readonly GatewayConfig _config = GatewayConfigLoader.Load(Encoding.UTF8.GetBytes("""
    {
      "Gateway": {
        "Providers": { "p": { "BaseUrl": "http://127.0.0.1:9/v1" } },
        "Models": {
          "gpt-4o": { "Provider": "p", "InputUsdPerMTok": 1000000, "OutputUsdPerMTok": 0 },
          "windowed": { "Provider": "p", "UpstreamModel": "gpt-4o", "InputUsdPerMTok": 1000000, "OutputUsdPerMTok": 0, "ContextWindow": 100 },
          "tiny-window": { "Provider": "p", "UpstreamModel": "gpt-4o", "InputUsdPerMTok": 1000000, "OutputUsdPerMTok": 0, "ContextWindow": 20 },
          "guessed": { "Provider": "p", "InputUsdPerMTok": 1000000, "OutputUsdPerMTok": 0 },
          "guessed-window": { "Provider": "p", "InputUsdPerMTok": 1000000, "OutputUsdPerMTok": 0, "ContextWindow": 100 },
          "estimated": { "Provider": "p", "Tokenizer": "estimate", "InputUsdPerMTok": 1000000, "OutputUsdPerMTok": 0 }
        },
        "Keys": [
          { "Key": "sk-far", "User": "far" },
          { "Key": "sk-near", "User": "near" },
          { "Key": "sk-spent", "User": "spent" },
          { "Key": "sk-tpm", "User": "tpm" }
        ],
        "Users": {
          "far": { "Budget": { "Usd": 1000000 } },
          "near": { "Budget": { "Usd": 5000 } },
          "spent": { "Budget": { "Usd": 50000 } },
          "tpm": { "Tpm": 5000 }
        }
      }
    }
    """), new ConfigurationBuilder().Build());

    public BudgetGuardTests()
    {
        _store = new InMemoryAdmissionStore(new AdmissionStoreOptions(), _time);
        _guard = new BudgetGuard(_store, new GatewayMetrics(_services.GetRequiredService<IMeterFactory>()), NullLogger<BudgetGuard>.Instance);
    }

    public void Dispose() => _services.Dispose();

    private static long Count => PromptTokens.Count(Encoding.UTF8.GetBytes(Body), Parse(Body).Prompt, TokenizerKind.O200kBase);

    private static long Bound => PromptTokens.Bound(Parse(Body).Prompt, TokenizerKind.O200kBase);

    [Fact]
    public async Task FarFromEveryLimit_ReservesTheCheapBound()
    {
        Assert.Null(await AdmitAsync("sk-far", "gpt-4o"));

        Assert.Equal(Bound, (await UserAsync("far")).ReservedUsd);
        Assert.True(Bound > 3 * Count, $"bound {Bound}, count {Count}");
    }

    [Fact]
    public async Task BoundALargeShareOfABudget_ReservesTheCount()
    {
        Assert.True(Bound * 64 >= 5000);

        Assert.Null(await AdmitAsync("sk-near", "gpt-4o"));

        Assert.Equal(Count, (await UserAsync("near")).ReservedUsd);
    }

    [Fact]
    public async Task BoundALargeShareOfTpm_ReservesTheCount()
    {
        Assert.Null(await AdmitAsync("sk-tpm", "gpt-4o"));

        Assert.Equal(Count + 1, (await UserAsync("tpm")).ReservedTokens);
    }

    [Fact]
    public async Task BoundRefused_CountFits_IsAdmittedWithTheCount()
    {
        Assert.True(Bound * 64 < 50000, "the bound must be a small share, so only the refusal leads to the count");
        await SpendAsync("spent", 50000 - Count);

        Assert.Null(await AdmitAsync("sk-spent", "gpt-4o"));

        Assert.Equal(Count, (await UserAsync("spent")).ReservedUsd);
    }

    [Fact]
    public async Task CountDoesNotFitEither_IsRefused()
    {
        await SpendAsync("spent", 50000 - Count + 1);

        var error = await AdmitAsync("sk-spent", "gpt-4o");

        Assert.Equal("budget_exceeded", error?.Code);
        Assert.Equal(0m, (await UserAsync("spent")).ReservedUsd);
    }

    [Fact]
    public async Task BoundOverTheContextWindow_CountWithin_IsAdmitted()
    {
        Assert.True(Bound > 100 && Count <= 100);

        Assert.Null(await AdmitAsync("sk-far", "windowed"));
    }

    [Fact]
    public async Task CountOverTheContextWindow_IsRefused_NamingTheTokenizer()
    {
        var error = await AdmitAsync("sk-far", "tiny-window");

        Assert.Equal("context_length_exceeded", error?.Code);
        Assert.Contains("more than 20 tokens (o200k_base)", error?.Message);
    }

    [Fact]
    public async Task ModelWithoutTokenizer_ReservesTheBytesBound()
    {
        Assert.Null(await AdmitAsync("sk-near", "guessed"));

        // Every byte a token: no provider's byte-level BPE can read the prompt as more, so no budget is passed.
        var prompt = Parse(Body).Prompt;
        Assert.Equal(PromptTokens.Bound(prompt, TokenizerKind.Bytes), (await UserAsync("near")).ReservedUsd);
        Assert.True(PromptTokens.Bound(prompt, TokenizerKind.Bytes) > PromptTokens.Bound(prompt, TokenizerKind.Estimate));
    }

    [Fact]
    public async Task ModelWithoutTokenizer_ContextWindow_ReadsTheEstimate_NotTheBound()
    {
        var prompt = Parse(Body).Prompt;
        Assert.True(PromptTokens.Bound(prompt, TokenizerKind.Estimate) <= 100 && PromptTokens.Bound(prompt, TokenizerKind.Bytes) > 100);

        Assert.Null(await AdmitAsync("sk-far", "guessed-window"));
    }

    [Fact]
    public async Task ModelSetToTheEstimate_ReservesBytesOverFour()
    {
        Assert.Null(await AdmitAsync("sk-near", "estimated"));

        Assert.Equal(PromptTokens.Bound(Parse(Body).Prompt, TokenizerKind.Estimate), (await UserAsync("near")).ReservedUsd);
    }

    private static LlmRequestInfo Parse(string body)
    {
        Assert.Null(LlmRequestInfo.TryParse(Encoding.UTF8.GetBytes(body), out var info, out _));
        return info;
    }

    private async Task<Errors.GatewayError?> AdmitAsync(string key, string model)
    {
        Assert.True(_config.TryGetKey(new Sha256Key(SHA256.HashData(Encoding.UTF8.GetBytes(key))), out var caller));
        var body = Encoding.UTF8.GetBytes(Body);
        var call = new LlmCall("req-1", caller, runId: null, LlmEndpoint.ChatCompletions, _config.Models[model], Parse(Body), body, _config.CallLimits, 0);
        return await _guard.AdmitAsync(_config, call, body, allowDowngrade: false, CancellationToken.None);
    }

    private async Task SpendAsync(string user, decimal usd)
    {
        var reserved = await _store.ReserveAsync(new AdmissionRequest { User = user, ReserveUsd = usd, ReservationTtl = TimeSpan.FromMinutes(1) });
        await _store.SettleAsync(reserved.Reservation!, usd, 0);
    }

    private async Task<UserBudgetState> UserAsync(string user) =>
        await _store.GetUserStateAsync(user, BudgetPeriods.GetKey(BudgetPeriod.Day, _time.GetUtcNow()));
}
