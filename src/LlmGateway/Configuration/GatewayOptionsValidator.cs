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
        ModelOptionsValidator.Check(errors, options);

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

        if (options.Store.TlsCaFile is { Length: > 0 } caFile && !File.Exists(caFile))
        {
            errors.Add($"{root}:Store:TlsCaFile: the file '{caFile}' does not exist");
        }

        if (options.Store.Timeout <= TimeSpan.Zero)
        {
            errors.Add($"{root}:Store:Timeout: must be positive");
        }

        if (options.Store.WaitForReplicas < 0)
        {
            errors.Add($"{root}:Store:WaitForReplicas: must not be negative");
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

        if (options.Store.LeaseRunClaimAfter < 0)
        {
            errors.Add($"{root}:Store:LeaseRunClaimAfter: must not be negative (0: never claim a run)");
        }

        ResilienceOptionsValidator.Check(errors, options);

        CheckCache(errors, $"{root}:Cache", options.Cache);

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

    internal static void CheckNonNegative(List<string> errors, string path, long value)
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
