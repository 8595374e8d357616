using System.Collections.Frozen;
using LlmGateway.Deployments;
using LlmGateway.Identity;

namespace LlmGateway.Configuration;

/// <summary>
/// One loaded, validated config, compiled for the request path: lookups are dictionary hits and every
/// upstream URI is built once here, not per request. Immutable; a reload swaps the whole object.
/// </summary>
internal sealed class GatewayConfig
{
    private readonly FrozenDictionary<Sha256Key, CallerKey> _keys;

    public GatewayConfig(GatewayOptions options, string version)
    {
        Options = options;
        Version = version;

        var providers = new Dictionary<string, ProviderRoute>(StringComparer.Ordinal);
        foreach (var (name, provider) in options.Providers)
        {
            providers[name] = new ProviderRoute(name, provider);
        }

        Providers = providers.ToFrozenDictionary(StringComparer.Ordinal);

        var models = new Dictionary<string, ModelRoute>(StringComparer.Ordinal);
        foreach (var (name, model) in options.Models)
        {
            var route = new ModelRoute(name, model, Providers);
            models[name] = route;

            // Off the request path: the first call that needs a count should not wait ~0.3 s for the BPE data.
            Accounting.TextTokenCounter.Preload(route.Tokenizer);
        }

        Models = models.ToFrozenDictionary(StringComparer.Ordinal);

        var keys = new Dictionary<Sha256Key, CallerKey>();
        foreach (var key in options.Keys)
        {
            var hash = key.Key is { Length: > 0 } plain ? Convert.FromHexString(KeyHashing.Sha256Hex(plain)) : Convert.FromHexString(key.KeySha256!);
            var user = key.User!;
            options.Users.TryGetValue(user, out var userOptions);
            var team = userOptions?.Team ?? options.UserDefaults.Team;
            keys[new Sha256Key(hash)] = new CallerKey(
                Id: key.Id is { Length: > 0 } id ? id : Convert.ToHexStringLower(hash, 0, 4),
                User: user,
                Team: team,
                IsConfiguredUser: userOptions is not null,
                AllowedModels: key.Models.Count == 0 ? null : key.Models.ToFrozenSet(StringComparer.Ordinal),
                Options: key,
                Policy: Budgets.CallerPolicy.Resolve(options, key, userOptions, team));
        }

        _keys = keys.ToFrozenDictionary();
        CallLimits = new Forwarding.LlmCallLimits(options.Limits.MaxResponseBodyBytes, options.Resilience.StreamIdleTimeout);
    }

    /// <summary>The per-call limits of this config, built once.</summary>
    public Forwarding.LlmCallLimits CallLimits { get; }

    public GatewayOptions Options { get; }

    /// <summary>Short hash of the config file's bytes.</summary>
    public string Version { get; }

    public FrozenDictionary<string, ProviderRoute> Providers { get; }

    public FrozenDictionary<string, ModelRoute> Models { get; }

    public bool TryGetKey(in Sha256Key hash, out CallerKey caller) => _keys.TryGetValue(hash, out caller!);
}

/// <summary>A provider as the request path needs it: resolved credentials and prebuilt endpoint URIs.</summary>
internal sealed class ProviderRoute
{
    public ProviderRoute(string name, ProviderOptions options)
    {
        Name = name;
        Options = options;
        var baseUrl = options.BaseUrl!.TrimEnd('/');
        ApiKey = options.ApiKey is { Length: > 0 } key
            ? key
            : options.ApiKeyEnv is { Length: > 0 } env ? Environment.GetEnvironmentVariable(env) : null;

        // A provider that names a key variable needs that key; one that names none (a local model, the mock) does not.
        IsUsable = ApiKey is { Length: > 0 } || string.IsNullOrEmpty(options.ApiKeyEnv);
        AuthHeaderValue = ApiKey is { Length: > 0 }
            ? string.Equals(options.AuthHeader, "Authorization", StringComparison.OrdinalIgnoreCase) ? "Bearer " + ApiKey : ApiKey
            : null;
        ChatCompletions = new Uri(baseUrl + "/chat/completions");
        Completions = new Uri(baseUrl + "/completions");
        Embeddings = new Uri(baseUrl + "/embeddings");
        Responses = new Uri(baseUrl + "/responses");
        Messages = new Uri(baseUrl + "/messages");
        CountTokens = new Uri(baseUrl + "/messages/count_tokens");
        Api = ApiDialects.Of(options);
        DestinationPrefix = ChatCompletions.GetLeftPart(UriPartial.Authority);
    }

    public string Name { get; }

    public ProviderOptions Options { get; }

    public string? ApiKey { get; }

    public string? AuthHeaderValue { get; }

    /// <summary>False when the provider needs a key from the environment that is not set.</summary>
    public bool IsUsable { get; }

    public Uri ChatCompletions { get; }

    public Uri Completions { get; }

    public Uri Embeddings { get; }

    public Uri Responses { get; }

    public Uri Messages { get; }

    public Uri CountTokens { get; }

    /// <summary>The API this provider speaks (<see cref="ProviderOptions.Api"/>).</summary>
    public ApiDialect Api { get; }

    /// <summary>Scheme, host and port: YARP's destination prefix, built once rather than per attempt.</summary>
    public string DestinationPrefix { get; }

    public Uri UriFor(LlmEndpoint endpoint) => endpoint switch
    {
        LlmEndpoint.ChatCompletions => ChatCompletions,
        LlmEndpoint.Completions => Completions,
        LlmEndpoint.Embeddings => Embeddings,
        LlmEndpoint.Messages => Messages,
        LlmEndpoint.CountTokens => CountTokens,
        _ => Responses,
    };
}

/// <summary>A model: its deployments (one for the Provider shorthand), prices and how a call picks a deployment.</summary>
internal sealed class ModelRoute
{
    /// <summary>A model served by one provider (the Provider shorthand).</summary>
    public ModelRoute(string name, ModelOptions options, ProviderRoute provider)
        : this(name, options, new Dictionary<string, ProviderRoute>(StringComparer.Ordinal) { [provider.Name] = provider })
    {
    }

    public ModelRoute(string name, ModelOptions options, IReadOnlyDictionary<string, ProviderRoute> providers)
    {
        Name = name;
        Options = options;
        UpstreamModel = options.UpstreamModel is { Length: > 0 } upstream ? upstream : name;
        var modelPrices = new ModelPrices(
            options.InputUsdPerMTok ?? 0m,
            options.CachedInputUsdPerMTok ?? options.InputUsdPerMTok ?? 0m,
            options.OutputUsdPerMTok ?? 0m,
            options.CacheWriteUsdPerMTok ?? options.InputUsdPerMTok ?? 0m);
        if (options.Deployments.Count == 0)
        {
            var provider = providers[options.Provider!];
            Deployments = [new DeploymentRoute(name, 0, provider.Name, provider, UpstreamModel, 1, 0, 0, modelPrices)];
        }
        else
        {
            var deployments = new DeploymentRoute[options.Deployments.Count];
            for (var i = 0; i < deployments.Length; i++)
            {
                var d = options.Deployments[i];
                var provider = providers[d.Provider!];
                var input = d.InputUsdPerMTok ?? modelPrices.InputPerMTok;
                var prices = new ModelPrices(
                    input,
                    d.CachedInputUsdPerMTok ?? (d.InputUsdPerMTok is null ? modelPrices.CachedInputPerMTok : input),
                    d.OutputUsdPerMTok ?? modelPrices.OutputPerMTok,
                    d.CacheWriteUsdPerMTok ?? (d.InputUsdPerMTok is null ? modelPrices.CacheWritePerMTok : input));
                deployments[i] = new DeploymentRoute(name, i, d.Name is { Length: > 0 } given ? given : provider.Name, provider,
                    d.UpstreamModel is { Length: > 0 } up ? up : UpstreamModel, d.Weight, d.Rpm, d.Tpm, prices);
            }

            Deployments = deployments;
        }

        // Admission reserves the worst case before the deployment is known: each price at its dearest deployment's.
        var worst = Deployments[0].Prices;
        foreach (var deployment in Deployments)
        {
            var p = deployment.Prices;
            worst = new ModelPrices(Math.Max(worst.InputPerMTok, p.InputPerMTok), Math.Max(worst.CachedInputPerMTok, p.CachedInputPerMTok),
                Math.Max(worst.OutputPerMTok, p.OutputPerMTok), Math.Max(worst.CacheWritePerMTok, p.CacheWritePerMTok));
        }

        Prices = worst;
        Provider = Deployments[0].Provider;
        IsUsable = Array.Exists(Deployments, static d => d.Provider.IsUsable);
        DeploymentStrategies.TryParse(options.Strategy, out var strategy);
        Strategy = strategy;
        StickyRun = string.Equals(options.Sticky, DeploymentStrategies.StickyRun, StringComparison.OrdinalIgnoreCase);
        Tokenizer = Accounting.TokenizerNames.TryParse(options.Tokenizer, out var tokenizer) ? tokenizer : Accounting.TokenizerNames.DefaultFor(UpstreamModel);
    }

    public string Name { get; }

    public string UpstreamModel { get; }

    /// <summary>"provider/model" of the first deployment (the single provider's circuit key).</summary>
    public string Upstream => Deployments[0].Upstream;

    public ModelOptions Options { get; }

    /// <summary>The first deployment's provider: the API the model speaks (every deployment speaks the same one).</summary>
    public ProviderRoute Provider { get; }

    /// <summary>Where the model is served; one entry for the Provider shorthand.</summary>
    public DeploymentRoute[] Deployments { get; }

    public DeploymentStrategy Strategy { get; }

    /// <summary>Sticky: "run".</summary>
    public bool StickyRun { get; }

    /// <summary>True when at least one deployment's provider has its key (or needs none).</summary>
    public bool IsUsable { get; }

    /// <summary>Each price at the dearest deployment's: what admission reserves. A call is charged its deployment's prices.</summary>
    public ModelPrices Prices { get; }

    /// <summary>How this model's tokens are counted: the configured Tokenizer, else the default for its upstream name.</summary>
    public Accounting.TokenizerKind Tokenizer { get; }
}

/// <summary>USD per million tokens; <see cref="CacheWritePerMTok"/> prices Anthropic's cache writes (default: the input price).</summary>
internal readonly record struct ModelPrices(decimal InputPerMTok, decimal CachedInputPerMTok, decimal OutputPerMTok, decimal CacheWritePerMTok)
{
    public ModelPrices(decimal inputPerMTok, decimal cachedInputPerMTok, decimal outputPerMTok)
        : this(inputPerMTok, cachedInputPerMTok, outputPerMTok, inputPerMTok)
    {
    }
}

/// <summary>The generation endpoints the gateway forwards: OpenAI's four, and Anthropic's Messages API.</summary>
internal enum LlmEndpoint
{
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,

    /// <summary>Anthropic's POST /v1/messages.</summary>
    Messages,

    /// <summary>Anthropic's POST /v1/messages/count_tokens: forwarded, never charged, admitted under RPM only.</summary>
    CountTokens,
}

/// <summary>The API a provider speaks, and so the routes its models are served on.</summary>
internal enum ApiDialect
{
    OpenAi,
    Anthropic,
}

/// <summary>Reads <see cref="ProviderOptions.Api"/>, and the dialect of an endpoint.</summary>
internal static class ApiDialects
{
    public const string OpenAiName = "openai";
    public const string AnthropicName = "anthropic";

    /// <summary>The configured Api, else inferred: a provider keyed by <c>x-api-key</c> is Anthropic's.</summary>
    public static ApiDialect Of(ProviderOptions options) =>
        TryParse(options.Api, out var api) ? api
        : string.Equals(options.AuthHeader, "x-api-key", StringComparison.OrdinalIgnoreCase) ? ApiDialect.Anthropic : ApiDialect.OpenAi;

    public static bool TryParse(string? name, out ApiDialect api)
    {
        api = ApiDialect.OpenAi;
        if (string.Equals(name, OpenAiName, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        api = ApiDialect.Anthropic;
        return string.Equals(name, AnthropicName, StringComparison.OrdinalIgnoreCase);
    }

    public static ApiDialect Of(LlmEndpoint endpoint) =>
        endpoint is LlmEndpoint.Messages or LlmEndpoint.CountTokens ? ApiDialect.Anthropic : ApiDialect.OpenAi;

    public static string Name(ApiDialect api) => api == ApiDialect.Anthropic ? AnthropicName : OpenAiName;
}
