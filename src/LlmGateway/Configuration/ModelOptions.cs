namespace LlmGateway.Configuration;

/// <summary>An upstream LLM provider.</summary>
public sealed record ProviderOptions
{
    /// <summary>Base URL including the API version segment, e.g. https://api.openai.com/v1.</summary>
    public string? BaseUrl { get; init; }

    /// <summary>The provider's key (from the environment: Gateway__Providers__NAME__ApiKey).</summary>
    public string? ApiKey { get; init; }

    /// <summary>Name of an environment variable holding the key, e.g. OPENAI_API_KEY; used when ApiKey is empty.</summary>
    public string? ApiKeyEnv { get; init; }

    /// <summary>Header that carries the key: "Authorization" (sent as Bearer) or e.g. "api-key" / "x-api-key" (sent raw).</summary>
    public string AuthHeader { get; init; } = "Authorization";

    /// <summary>
    /// The API the provider speaks: "openai" (chat/completions, completions, embeddings, responses) or "anthropic"
    /// (messages). Absent: "anthropic" when AuthHeader is x-api-key, else "openai".
    /// </summary>
    public string? Api { get; init; }

    /// <summary>Extra headers added to every upstream request (values may be secrets: never logged).</summary>
    public Dictionary<string, string> Headers { get; init; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Bulkhead: at most this many requests to this provider at once; 0 = unlimited.</summary>
    public int MaxConcurrency { get; init; }

    /// <summary>Requests that may wait for a bulkhead slot; beyond, 503 at once (or a fallback).</summary>
    public int MaxQueue { get; init; } = 16;
}

/// <summary>A model the gateway serves, with its prices per million tokens.</summary>
public sealed record ModelOptions
{
    /// <summary>The one provider that serves the model: the shorthand of a single deployment. Or <see cref="Deployments"/>.</summary>
    public string? Provider { get; init; }

    /// <summary>Several places that serve the model (keys, organisations, regions), in place of <see cref="Provider"/>.</summary>
    public List<DeploymentOptions> Deployments { get; init; } = [];

    /// <summary>How a call picks among <see cref="Deployments"/>: <c>weighted</c> (default: random by Weight) or <c>least-busy</c>.</summary>
    public string? Strategy { get; init; }

    /// <summary><c>run</c>: every call of a run (X-Run-Id) goes to the deployment its first call used, while that one is healthy.</summary>
    public string? Sticky { get; init; }

    /// <summary>The model name sent upstream when it differs from the name callers use.</summary>
    public string? UpstreamModel { get; init; }

    public decimal? InputUsdPerMTok { get; init; }
    public decimal? CachedInputUsdPerMTok { get; init; }

    /// <summary>Price of Anthropic's cache writes (cache_creation_input_tokens); absent: the input price.</summary>
    public decimal? CacheWriteUsdPerMTok { get; init; }

    public decimal? OutputUsdPerMTok { get; init; }
    public int ContextWindow { get; init; }
    public int DefaultMaxOutputTokens { get; init; }
    public string? DowngradeTo { get; init; }
    public List<string> Fallbacks { get; init; } = [];

    /// <summary>
    /// How prompts are counted for reservations, the context guard and cut streams: <c>o200k_base</c>,
    /// <c>cl100k_base</c> or <c>estimate</c> (bytes / 4). Absent: from the upstream model name (gpt-4o, gpt-4.1,
    /// gpt-5, o-series: o200k_base; gpt-4, gpt-3.5: cl100k_base; others: estimate).
    /// </summary>
    public string? Tokenizer { get; init; }
}

/// <summary>One place a model is served: a provider (its key and URL), the model name there, a weight and its own quota.</summary>
public sealed record DeploymentOptions
{
    /// <summary>The name in X-Gateway-Deployment, metrics and logs; default the provider's name (two deployments on one provider need names).</summary>
    public string? Name { get; init; }

    public string? Provider { get; init; }

    /// <summary>The model name sent to this deployment; default the model's UpstreamModel, else its name.</summary>
    public string? UpstreamModel { get; init; }

    /// <summary>Share of the calls under the <c>weighted</c> strategy, and the tie-break of <c>least-busy</c>; default 1.</summary>
    public double Weight { get; init; } = 1;

    /// <summary>This deployment's own requests per minute (the provider's quota for its key); 0 = none.</summary>
    public int Rpm { get; init; }

    /// <summary>This deployment's own tokens per minute; 0 = none.</summary>
    public int Tpm { get; init; }

    /// <summary>Prices of this deployment when they differ from the model's (absent: the model's).</summary>
    public decimal? InputUsdPerMTok { get; init; }

    public decimal? CachedInputUsdPerMTok { get; init; }

    public decimal? CacheWriteUsdPerMTok { get; init; }

    public decimal? OutputUsdPerMTok { get; init; }
}
