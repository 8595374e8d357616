namespace LlmGateway.Configuration;

/// <summary>Checks Gateway:Resilience and Gateway:Tools (retries, timeouts, breakers, bulkheads); every error names its key path.</summary>
internal static class ResilienceOptionsValidator
{
    public static void Check(List<string> errors, GatewayOptions options)
    {
        const string root = GatewayOptions.SectionName;
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

        GatewayOptionsValidator.CheckNonNegative(errors, $"{root}:Resilience:MinRetriesPerSecond", resilience.MinRetriesPerSecond);
        GatewayOptionsValidator.CheckNonNegative(errors, $"{root}:Resilience:MaxRetriesPerRun", resilience.MaxRetriesPerRun);
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

        foreach (var (name, tool) in options.Tools)
        {
            CheckTool(errors, $"{root}:Tools:{name}", tool);
        }
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

        GatewayOptionsValidator.CheckNonNegative(errors, $"{path}:MaxConcurrency", tool.MaxConcurrency);
        GatewayOptionsValidator.CheckNonNegative(errors, $"{path}:MaxQueue", tool.MaxQueue);
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
}
