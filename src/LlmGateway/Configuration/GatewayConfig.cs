using System.Collections.Frozen;
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
            var route = new ModelRoute(name, model, Providers[model.Provider!]);
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

/// <summary>A model: its provider and prices.</summary>
internal sealed class ModelRoute
{
    public ModelRoute(string name, ModelOptions options, ProviderRoute provider)
    {
        Name = name;
        Options = options;
        Provider = provider;
        UpstreamModel = options.UpstreamModel is { Length: > 0 } upstream ? upstream : name;
        Prices = new ModelPrices(
            options.InputUsdPerMTok ?? 0m,
            options.CachedInputUsdPerMTok ?? options.InputUsdPerMTok ?? 0m,
            options.OutputUsdPerMTok ?? 0m,
            options.CacheWriteUsdPerMTok ?? options.InputUsdPerMTok ?? 0m);
        Tokenizer = Accounting.TokenizerNames.TryParse(options.Tokenizer, out var tokenizer) ? tokenizer : Accounting.TokenizerNames.DefaultFor(UpstreamModel);
    }

    public string Name { get; }

    public string UpstreamModel { get; }

    /// <summary>"provider/model": the key of this upstream's retry and circuit policy, built once rather than per call.</summary>
    public string Upstream => field ??= Provider.Name + "/" + Name;

    public ModelOptions Options { get; }

    public ProviderRoute Provider { get; }

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
