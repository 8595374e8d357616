namespace LlmGateway.Budgets;

/// <summary>The per-minute rate checks and the x-ratelimit-* snapshots.</summary>
internal sealed partial class InMemoryAdmissionStore
{
    private static RateLimitSnapshot Tighter(RateLimitSnapshot best, long limit, long remaining, RateWindow window, long now)
    {
        if (limit <= 0)
        {
            return best;
        }

        remaining = Math.Max(0, remaining);
        if (best.Limit > 0 && remaining >= best.Remaining)
        {
            return best;
        }

        return new RateLimitSnapshot(limit, remaining, TimeSpan.FromMilliseconds(window.ResetMs(now)));
    }


    /// <summary>True when the call does not fit; <paramref name="retryAtMs"/> is when it will (-1: never, it is larger than the limit).</summary>
    internal static bool CheckRate(RateWindow log, RateLimits limits, long tokens, long now, out AdmissionLimit limit, out long retryAtMs)
    {
        var nowSecond = AdmissionConstants.Second(now);
        var rpm = limits.RequestsPerMinute;
        if (rpm > 0 && log.Requests + 1 > rpm)
        {
            limit = AdmissionLimit.RequestsPerMinute;
            retryAtMs = log.FreeingMs(log.Requests + 1 - rpm, tokens: false, nowSecond);
            return true;
        }

        var tpm = limits.TokensPerMinute;
        if (tpm > 0 && tokens > 0 && log.Tokens + tokens > tpm)
        {
            limit = AdmissionLimit.TokensPerMinute;
            retryAtMs = tokens > tpm ? -1 : log.FreeingMs(log.Tokens + tokens - tpm, tokens: true, nowSecond);
            return true;
        }

        limit = AdmissionLimit.None;
        retryAtMs = -1;
        return false;
    }

    private static (RateLimitSnapshot Requests, RateLimitSnapshot Tokens) Snapshot(
        RateWindow? userLog, RateLimits userRates, RateWindow? keyLog, RateLimits keyRates, long now)
    {
        RateLimitSnapshot requests = default, tokens = default;
        if (userLog is not null)
        {
            requests = Tighter(requests, userRates.RequestsPerMinute, userRates.RequestsPerMinute - userLog.Requests, userLog, now);
            tokens = Tighter(tokens, userRates.TokensPerMinute, userRates.TokensPerMinute - userLog.Tokens, userLog, now);
        }

        if (keyLog is not null)
        {
            requests = Tighter(requests, keyRates.RequestsPerMinute, keyRates.RequestsPerMinute - keyLog.Requests, keyLog, now);
            tokens = Tighter(tokens, keyRates.TokensPerMinute, keyRates.TokensPerMinute - keyLog.Tokens, keyLog, now);
        }

        return (requests, tokens);
    }
}
