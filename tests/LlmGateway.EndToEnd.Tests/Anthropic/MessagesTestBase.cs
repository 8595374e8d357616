using System.Globalization;
using System.Text.Json;
using Anthropic;
using Anthropic.Core;
using Anthropic.Models.Messages;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Anthropic;

/// <summary>
/// A gateway in front of the mock provider's Anthropic routes, and the official Anthropic .NET SDK as its client.
/// "mock-claude" is priced like Claude Sonnet: $3 input, $0.30 cache read, $3.75 cache write, $15 output per million.
/// </summary>
public abstract class MessagesTestBase : GatewayTestBase
{
    public const string AnthropicVersion = "2023-06-01";

    protected override string Config(string mockBaseUrl) => $$"""
    {
      "Gateway": {
        "AdminKey": "{{TestConfigs.AdminKey}}",
        "Providers": {
          "claude": { "BaseUrl": "{{mockBaseUrl}}/v1", "ApiKey": "{{TestConfigs.ProviderKey}}", "AuthHeader": "x-api-key" },
          "claude-breaker": { "BaseUrl": "{{mockBaseUrl}}/v1", "Api": "anthropic" },
          "openai-mock": { "BaseUrl": "{{mockBaseUrl}}/v1" }
        },
        "Models": {
          "mock-claude": { "Provider": "claude", "InputUsdPerMTok": 3, "CachedInputUsdPerMTok": 0.30, "CacheWriteUsdPerMTok": 3.75, "OutputUsdPerMTok": 15 },
          "claude-flaky": { "Provider": "claude", "InputUsdPerMTok": 3, "OutputUsdPerMTok": 15, "Fallbacks": [ "mock-claude" ] },
          "claude-breaker": { "Provider": "claude-breaker", "InputUsdPerMTok": 3, "OutputUsdPerMTok": 15 },
          "claude-metered": { "Provider": "claude", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000 },
          "mock-small": { "Provider": "openai-mock", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 2 }
        },
        "Keys": [
          { "Key": "{{TestConfigs.Key}}", "Id": "alice-key", "User": "alice", "AllowRecord": true },
          { "Key": "sk-bob", "User": "bob", "Models": [ "mock-small" ] },
          { "Key": "sk-poor", "User": "poor" },
          { "Key": "sk-loop", "User": "looper" },
          { "Key": "sk-rpm", "User": "rpm-user" },
          { "Key": "sk-deadline", "User": "deadline-user" },
          { "Key": "sk-thrifty", "User": "thrifty-member" },
          { "Key": "sk-tpm", "User": "tpm-user" }
        ],
        "Users": {
          "alice": { "Team": "research" },
          "poor": { "Budget": { "Usd": 0.001, "Period": "Day" } },
          "looper": { "Runs": { "MaxRepeats": 1 } },
          "rpm-user": { "Rpm": 1 },
          "deadline-user": { "Runs": { "Deadline": "00:00:00.001" } },
          "thrifty-member": { "Team": "thrifty" },
          "tpm-user": { "Tpm": 500 }
        },
        "Teams": { "research": { }, "thrifty": { "Budget": { "Usd": 0.001, "Period": "Day" } } },
        "Cache": { "Enabled": true, "ChargeHits": true },
        "Limits": { "MaxRequestBodyBytes": 65536 },
        "Resilience": {
          "MaxAttempts": 3, "MaxRetryWait": "00:00:05", "MaxTotalRetryWait": "00:00:10", "RetryBaseDelay": "00:00:00.020",
          "AttemptTimeout": "00:00:05", "StreamIdleTimeout": "00:00:05", "MinRetriesPerSecond": 100, "MaxRetriesPerRun": 0,
          "CircuitBreaker": { "FailureRatio": 0.5, "SamplingDuration": "00:00:30", "MinimumThroughput": 4, "BreakDuration": "00:01:00" }
        }
      }
    }
    """;

    /// <summary>
    /// The SDK pointed at the gateway with a gateway key (sent as x-api-key, as the SDK sends keys), its own retries
    /// off so that every attempt seen is the gateway's, and <paramref name="headers"/> added to every request.
    /// </summary>
    protected AnthropicClient Client(string key = TestConfigs.Key, CostRecorder? costs = null, params (string Name, string Value)[] headers) =>
        new(new ClientOptions
        {
            BaseUrl = Gateway.BaseUrl,
            ApiKey = key,
            MaxRetries = 0,
            Timeout = TimeSpan.FromSeconds(30),
            Handlers = [new HeaderHandler(headers, costs)],
        });

    /// <summary>A Messages request from its JSON, as the SDK sends it.</summary>
    protected static MessageCreateParams Params(string json)
    {
        using var document = JsonDocument.Parse(json);
        var body = document.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone());
        return MessageCreateParams.FromRawUnchecked(new Dictionary<string, JsonElement>(), new Dictionary<string, JsonElement>(), body);
    }

    protected static string UserTurn(string model, string text, int maxTokens = 256, bool stream = false) =>
        $$"""{"model":"{{model}}","max_tokens":{{maxTokens}},"messages":[{"role":"user","content":"{{text}}"}]{{(stream ? ",\"stream\":true" : "")}}}""";

    /// <summary>What mock-claude charges for a usage, by hand: uncached input, cache reads, cache writes, output.</summary>
    protected static decimal MockClaudeCost(long input, long cacheRead, long cacheWrite, long output) =>
        ((input * 3m) + (cacheRead * 0.30m) + (cacheWrite * 3.75m) + (output * 15m)) / 1_000_000m;

    protected async Task<JsonElement> AdminJson(string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", TestConfigs.AdminKey);
        using var response = await Gateway.Client.SendAsync(request);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return document.RootElement.Clone();
    }

    /// <summary>Collects the X-Gateway-Cost-Usd of every answer the SDK received.</summary>
    public sealed class CostRecorder
    {
        private readonly List<decimal> _costs = [];

        public IReadOnlyList<decimal> Costs
        {
            get
            {
                lock (_costs)
                {
                    return _costs.ToArray();
                }
            }
        }

        public void Add(decimal cost)
        {
            lock (_costs)
            {
                _costs.Add(cost);
            }
        }
    }

    private sealed class HeaderHandler((string Name, string Value)[] headers, CostRecorder? costs) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            foreach (var (name, value) in headers)
            {
                request.Headers.Remove(name);
                request.Headers.TryAddWithoutValidation(name, value);
            }

            var response = await base.SendAsync(request, cancellationToken);
            if (costs is not null && response.Headers.TryGetValues("X-Gateway-Cost-Usd", out var values))
            {
                costs.Add(decimal.Parse(values.Single(), CultureInfo.InvariantCulture));
            }

            return response;
        }
    }
}
