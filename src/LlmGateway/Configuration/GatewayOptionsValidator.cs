namespace LlmGateway.Configuration;

/// <summary>
/// Checks a loaded config and collects every problem (not just the first), each naming the key path
/// and the reason, the way YARP's route validators do.
/// </summary>
internal static class GatewayOptionsValidator
{
    public static List<string> Validate(GatewayOptions options)
    {
        var errors = new List<string>();
        const string root = GatewayOptions.SectionName;

        if (options.Providers.Count == 0)
        {
            errors.Add($"{root}:Providers: at least one provider is required");
        }

        foreach (var (name, provider) in options.Providers)
        {
            var path = $"{root}:Providers:{name}";
            if (string.IsNullOrWhiteSpace(provider.BaseUrl))
            {
                errors.Add($"{path}:BaseUrl: is required");
            }
            else if (!Uri.TryCreate(provider.BaseUrl, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            {
                errors.Add($"{path}:BaseUrl: '{provider.BaseUrl}' is not an absolute http(s) URL");
            }

            CheckNonNegative(errors, $"{path}:MaxConcurrency", provider.MaxConcurrency);
            CheckNonNegative(errors, $"{path}:MaxQueue", provider.MaxQueue);
            if (string.IsNullOrWhiteSpace(provider.AuthHeader))
            {
                errors.Add($"{path}:AuthHeader: must not be empty");
            }

            if (provider.Api is not null && !ApiDialects.TryParse(provider.Api, out _))
            {
                errors.Add($"{path}:Api: unknown API '{provider.Api}'; use {ApiDialects.OpenAiName} or {ApiDialects.AnthropicName}");
            }
        }

        foreach (var (name, model) in options.Models)
        {
            var path = $"{root}:Models:{name}";
            if (string.IsNullOrWhiteSpace(model.Provider))
            {
                errors.Add($"{path}:Provider: is required");
            }
            else if (!options.Providers.ContainsKey(model.Provider))
            {
                errors.Add($"{path}:Provider: unknown provider '{model.Provider}'");
            }

            CheckPrice(errors, $"{path}:InputUsdPerMTok", model.InputUsdPerMTok, required: true);
            CheckPrice(errors, $"{path}:OutputUsdPerMTok", model.OutputUsdPerMTok, required: true);
            CheckPrice(errors, $"{path}:CachedInputUsdPerMTok", model.CachedInputUsdPerMTok, required: false);
            CheckPrice(errors, $"{path}:CacheWriteUsdPerMTok", model.CacheWriteUsdPerMTok, required: false);
            if (model.ContextWindow < 0)
            {
                errors.Add($"{path}:ContextWindow: must not be negative");
            }

            if (model.DefaultMaxOutputTokens < 0)
            {
                errors.Add($"{path}:DefaultMaxOutputTokens: must not be negative");
            }

            if (model.Tokenizer is not null && !Accounting.TokenizerNames.TryParse(model.Tokenizer, out _))
            {
                errors.Add($"{path}:Tokenizer: unknown tokenizer '{model.Tokenizer}'; use {Accounting.TokenizerNames.Choices}");
            }

            if (model.DowngradeTo is { Length: > 0 } downgrade)
            {
                if (!options.Models.ContainsKey(downgrade))
                {
                    errors.Add($"{path}:DowngradeTo: unknown model '{downgrade}'");
                }
                else
                {
                    CheckSameApi(errors, options, $"{path}:DowngradeTo", name, model, downgrade);
                }
            }

            for (var i = 0; i < model.Fallbacks.Count; i++)
            {
                if (!options.Models.ContainsKey(model.Fallbacks[i]))
                {
                    errors.Add($"{path}:Fallbacks:{i}: unknown model '{model.Fallbacks[i]}'");
                }
                else
                {
                    CheckSameApi(errors, options, $"{path}:Fallbacks:{i}", name, model, model.Fallbacks[i]);
                }
            }
        }

        var seenHashes = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        for (var i = 0; i < options.Keys.Count; i++)
        {
            var key = options.Keys[i];
            var path = $"{root}:Keys:{i}";
            var hasPlain = !string.IsNullOrEmpty(key.Key);
            var hasHash = !string.IsNullOrEmpty(key.KeySha256);
            if (hasPlain == hasHash)
            {
                errors.Add($"{path}: exactly one of Key or KeySha256 is required");
            }

            if (hasHash && !IsSha256Hex(key.KeySha256!))
            {
                errors.Add($"{path}:KeySha256: must be 64 hex digits (the SHA-256 of the key)");
            }

            if (string.IsNullOrWhiteSpace(key.User))
            {
                errors.Add($"{path}:User: is required");
            }

            var hash = hasPlain ? KeyHashing.Sha256Hex(key.Key!) : key.KeySha256;
            if (hash is not null && !seenHashes.Add(hash))
            {
                errors.Add($"{path}: the same key is configured twice");
            }

            for (var m = 0; m < key.Models.Count; m++)
            {
                if (!options.Models.ContainsKey(key.Models[m]))
                {
                    errors.Add($"{path}:Models:{m}: unknown model '{key.Models[m]}'");
                }
            }

            CheckNonNegative(errors, $"{path}:Rpm", key.Rpm);
            CheckNonNegative(errors, $"{path}:Tpm", key.Tpm);
            foreach (var (tool, rules) in key.Tools)
            {
                if (!options.Tools.ContainsKey(tool))
                {
                    errors.Add($"{path}:Tools:{tool}: unknown tool '{tool}'");
                }

                for (var r = 0; r < rules.Count; r++)
                {
                    if (!LlmGateway.Tools.ToolRule.TryParse(tool, r, rules[r], out _, out var ruleError))
                    {
                        errors.Add($"{path}:Tools:{tool}:{r}:{ruleError}");
                    }
                }
            }
        }

        ApprovalOptionsValidator.Check(errors, options);
        TracingOptionsValidator.Check(errors, options);
        CheckUser(errors, $"{root}:UserDefaults", options.UserDefaults, options);
        foreach (var (name, user) in options.Users)
        {
            CheckUser(errors, $"{root}:Users:{name}", user, options);
        }

        foreach (var (name, team) in options.Teams)
        {
            CheckBudget(errors, $"{root}:Teams:{name}:Budget", team.Budget);
        }

        CheckRuns(errors, $"{root}:Runs", options.Runs);

        if (options.Limits.MaxRequestBodyBytes <= 0)
        {
            errors.Add($"{root}:Limits:MaxRequestBodyBytes: must be positive");
        }

        if (options.Metrics.Port is < 0 or > 65535)
        {
            errors.Add($"{root}:Metrics:Port: must be a TCP port (1-65535), or 0 to serve /metrics on the gateway's port");
        }

        if (options.Metrics.Probes && options.Metrics.Port == 0)
        {
            errors.Add($"{root}:Metrics:Probes: needs Metrics:Port (the probes are on the gateway's port already)");
        }

        if (options.Limits.MaxResponseBodyBytes <= 0)
        {
            errors.Add($"{root}:Limits:MaxResponseBodyBytes: must be positive");
        }

        if (options.Otlp.Endpoint is { Length: > 0 } otlp && !Uri.TryCreate(otlp, UriKind.Absolute, out _))
        {
            errors.Add($"{root}:Otlp:Endpoint: '{otlp}' is not an absolute URL");
        }

        if (options.Otlp.Interval < TimeSpan.FromSeconds(1))
        {
            errors.Add($"{root}:Otlp:Interval: must be at least 00:00:01");
        }

        if (options.Limits.MaxRequestUsd < 0)
        {
            errors.Add($"{root}:Limits:MaxRequestUsd: must not be negative");
        }

        if (options.Store.Timeout <= TimeSpan.Zero)
        {
            errors.Add($"{root}:Store:Timeout: must be positive");
        }

        if (options.Store.ReservationTtl <= TimeSpan.Zero)
        {
            errors.Add($"{root}:Store:ReservationTtl: must be positive");
        }

        if (string.IsNullOrEmpty(options.Store.KeyPrefix))
        {
            errors.Add($"{root}:Store:KeyPrefix: must not be empty");
        }

        if (options.Store.MaxRuns <= 0)
        {
            errors.Add($"{root}:Store:MaxRuns: must be positive");
        }

        if (options.Resilience.MaxAttempts < 1)
        {
            errors.Add($"{root}:Resilience:MaxAttempts: must be at least 1");
        }

        if (options.Resilience.AttemptTimeout <= TimeSpan.Zero)
        {
            errors.Add($"{root}:Resilience:AttemptTimeout: must be positive");
        }

        var resilience = options.Resilience;
        if (resilience.MaxRetryWait < TimeSpan.Zero || resilience.MaxTotalRetryWait < TimeSpan.Zero || resilience.RetryBaseDelay < TimeSpan.Zero)
        {
            errors.Add($"{root}:Resilience: MaxRetryWait, MaxTotalRetryWait and RetryBaseDelay must not be negative");
        }

        if (resilience.RetryBudgetRatio is < 0 or > 10)
        {
            errors.Add($"{root}:Resilience:RetryBudgetRatio: must be between 0 and 10");
        }

        CheckNonNegative(errors, $"{root}:Resilience:MinRetriesPerSecond", resilience.MinRetriesPerSecond);
        CheckNonNegative(errors, $"{root}:Resilience:MaxRetriesPerRun", resilience.MaxRetriesPerRun);
        var breaker = resilience.CircuitBreaker;
        if (breaker.FailureRatio is <= 0 or > 1)
        {
            errors.Add($"{root}:Resilience:CircuitBreaker:FailureRatio: must be in (0, 1]");
        }

        if (breaker.MinimumThroughput < 2)
        {
            errors.Add($"{root}:Resilience:CircuitBreaker:MinimumThroughput: must be at least 2");
        }

        if (breaker.SamplingDuration < TimeSpan.FromMilliseconds(500) || breaker.BreakDuration < TimeSpan.FromMilliseconds(500))
        {
            errors.Add($"{root}:Resilience:CircuitBreaker: SamplingDuration and BreakDuration must be at least 00:00:00.5");
        }

        if (options.Resilience.StreamIdleTimeout <= TimeSpan.Zero)
        {
            errors.Add($"{root}:Resilience:StreamIdleTimeout: must be positive");
        }

        CheckCache(errors, $"{root}:Cache", options.Cache);

        foreach (var (name, tool) in options.Tools)
        {
            CheckTool(errors, $"{root}:Tools:{name}", tool);
        }

        if (options.Idempotency.Ttl <= TimeSpan.Zero)
        {
            errors.Add($"{root}:Idempotency:Ttl: must be positive");
        }

        if (options.Idempotency.WaitTimeout < TimeSpan.Zero)
        {
            errors.Add($"{root}:Idempotency:WaitTimeout: must not be negative");
        }

        if (options.Idempotency.MaxStoredResponseBytes <= 0 || options.Idempotency.MaxStoredResponseBytes > int.MaxValue / 2)
        {
            errors.Add($"{root}:Idempotency:MaxStoredResponseBytes: must be positive and below 1 GiB");
        }

        if (options.Idempotency.MaxEntries <= 0)
        {
            errors.Add($"{root}:Idempotency:MaxEntries: must be positive");
        }

        if (options.Idempotency.MaxBytes <= 0)
        {
            errors.Add($"{root}:Idempotency:MaxBytes: must be positive");
        }

        return errors;
    }

    private static void CheckTool(List<string> errors, string path, ToolOptions tool)
    {
        if (!Uri.TryCreate(tool.BaseUrl, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add($"{path}:BaseUrl: '{tool.BaseUrl}' is not an absolute http(s) URL");
        }
        else if (!string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment))
        {
            errors.Add($"{path}:BaseUrl: '{tool.BaseUrl}' may not have a query or fragment");
        }

        foreach (var name in tool.Headers.Keys)
        {
            if (string.IsNullOrWhiteSpace(name) || name.Any(c => c <= ' ' || c >= 127 || c == ':'))
            {
                errors.Add($"{path}:Headers:{name}: is not a valid header name");
            }
        }

        if (tool.Timeout <= TimeSpan.Zero)
        {
            errors.Add($"{path}:Timeout: must be positive");
        }

        CheckNonNegative(errors, $"{path}:MaxConcurrency", tool.MaxConcurrency);
        CheckNonNegative(errors, $"{path}:MaxQueue", tool.MaxQueue);
        if (tool.MaxAttempts is < 1 or > 10)
        {
            errors.Add($"{path}:MaxAttempts: must be 1 to 10");
        }

        if (tool.MaxRetryWait < TimeSpan.Zero)
        {
            errors.Add($"{path}:MaxRetryWait: must not be negative");
        }

        var breaker = tool.Breaker;
        if (breaker.FailureRatio is < 0 or > 1)
        {
            errors.Add($"{path}:Breaker:FailureRatio: must be between 0 (no breaker) and 1");
        }
        else if (breaker.FailureRatio > 0)
        {
            if (breaker.MinimumThroughput < 2)
            {
                errors.Add($"{path}:Breaker:MinimumThroughput: must be at least 2");
            }

            if (breaker.SamplingDuration < TimeSpan.FromMilliseconds(500) || breaker.SamplingDuration > TimeSpan.FromDays(1))
            {
                errors.Add($"{path}:Breaker:SamplingDuration: must be 00:00:00.5 to 1.00:00:00");
            }

            if (breaker.BreakDuration < TimeSpan.FromMilliseconds(500) || breaker.BreakDuration > TimeSpan.FromDays(1))
            {
                errors.Add($"{path}:Breaker:BreakDuration: must be 00:00:00.5 to 1.00:00:00");
            }
        }
    }

    private static void CheckUser(List<string> errors, string path, UserOptions user, GatewayOptions options)
    {
        if (user.Team is { Length: > 0 } team && !options.Teams.ContainsKey(team))
        {
            errors.Add($"{path}:Team: unknown team '{team}'");
        }

        CheckBudget(errors, $"{path}:Budget", user.Budget);
        CheckNonNegative(errors, $"{path}:Rpm", user.Rpm ?? 0);
        CheckNonNegative(errors, $"{path}:Tpm", user.Tpm ?? 0);
        CheckNonNegative(errors, $"{path}:MaxInFlight", user.MaxInFlight ?? 0);
        if (user.DowngradeAt is { } at && (at <= 0 || at > 1))
        {
            errors.Add($"{path}:DowngradeAt: must be a fraction in (0, 1]");
        }

        if (user.Runs is not null)
        {
            CheckRuns(errors, $"{path}:Runs", user.Runs);
        }
    }

    private static void CheckRuns(List<string> errors, string path, RunOptions runs)
    {
        if (runs.Usd < 0)
        {
            errors.Add($"{path}:Usd: must not be negative");
        }

        CheckNonNegative(errors, $"{path}:Tokens", runs.Tokens);
        CheckNonNegative(errors, $"{path}:Calls", runs.Calls);
        CheckNonNegative(errors, $"{path}:MaxRepeats", runs.MaxRepeats);
        CheckNonNegative(errors, $"{path}:MaxInFlight", runs.MaxInFlight);
        CheckNonNegative(errors, $"{path}:MaxInputTokens", runs.MaxInputTokens);
        if (runs.Deadline is { } deadline && deadline < TimeSpan.Zero)
        {
            errors.Add($"{path}:Deadline: must not be negative");
        }
    }

    private static void CheckCache(List<string> errors, string path, CacheOptions cache)
    {
        if (!Caching.CacheScopes.TryParse(cache.Scope, out _))
        {
            errors.Add($"{path}:Scope: '{cache.Scope}' is not one of User, Team, Global");
        }

        if (cache.Ttl <= TimeSpan.Zero)
        {
            errors.Add($"{path}:Ttl: must be positive");
        }

        if (cache.MaxEntryBytes <= 0)
        {
            errors.Add($"{path}:MaxEntryBytes: must be positive");
        }

        if (cache.MemoryMaxBytes <= 0)
        {
            errors.Add($"{path}:MemoryMaxBytes: must be positive");
        }

        if (cache.SingleFlightWait < TimeSpan.Zero)
        {
            errors.Add($"{path}:SingleFlightWait: must not be negative");
        }

        if (cache.RecordingTtl <= TimeSpan.Zero)
        {
            errors.Add($"{path}:RecordingTtl: must be positive");
        }

        if (cache.RecordingMaxBytes <= 0)
        {
            errors.Add($"{path}:RecordingMaxBytes: must be positive");
        }

        if (cache.RecordingMaxRuns <= 0)
        {
            errors.Add($"{path}:RecordingMaxRuns: must be positive");
        }

        if (cache.RecordingMaxRunBytes <= 0)
        {
            errors.Add($"{path}:RecordingMaxRunBytes: must be positive");
        }
    }

    private static void CheckBudget(List<string> errors, string path, BudgetOptions? budget)
    {
        if (budget is null)
        {
            return;
        }

        if (budget.Usd < 0)
        {
            errors.Add($"{path}:Usd: must not be negative");
        }

        CheckNonNegative(errors, $"{path}:Tokens", budget.Tokens);
    }

    /// <summary>
    /// A stand-in (fallback, downgrade) gets the caller's body unchanged, so it must speak the API of the model it stands
    /// in for: an OpenAI body sent to Anthropic's /messages (or the reverse) is refused by the provider, or worse, misread.
    /// </summary>
    private static void CheckSameApi(List<string> errors, GatewayOptions options, string path, string name, ModelOptions model, string standIn)
    {
        if (model.Provider is null || !options.Providers.TryGetValue(model.Provider, out var provider)
            || options.Models[standIn].Provider is not { } standInProviderName || !options.Providers.TryGetValue(standInProviderName, out var standInProvider))
        {
            return;
        }

        var api = ApiDialects.Of(provider);
        var standInApi = ApiDialects.Of(standInProvider);
        if (api != standInApi)
        {
            errors.Add($"{path}: model '{standIn}' speaks the {ApiDialects.Name(standInApi)} API (provider '{standInProviderName}'), but '{name}' speaks {ApiDialects.Name(api)}; a stand-in must speak the same API as the model it stands in for");
        }
    }

    private static void CheckPrice(List<string> errors, string path, decimal? price, bool required)
    {
        if (price is null)
        {
            if (required)
            {
                errors.Add($"{path}: a price is required (use 0 for a free model)");
            }
        }
        else if (price < 0)
        {
            errors.Add($"{path}: must not be negative");
        }
    }

    private static void CheckNonNegative(List<string> errors, string path, long value)
    {
        if (value < 0)
        {
            errors.Add($"{path}: must not be negative");
        }
    }

    private static bool IsSha256Hex(string value)
    {
        if (value.Length != 64)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (!char.IsAsciiHexDigit(c))
            {
                return false;
            }
        }

        return true;
    }
}
