using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>What an admission script's numbers mean to the caller: budget fractions and x-ratelimit snapshots.</summary>
internal sealed partial class RedisAdmissionStore
{
    /// <summary>
    /// The largest fraction of a budget's USD, tokens and calls used (spent and held) before the call, from what the
    /// script read (<paramref name="used"/>: USD nanos, tokens, calls), in millionths as the in-memory store rounds it.
    /// </summary>
    internal static double Fraction(ReadOnlySpan<long> used, BudgetLimits limits)
    {
        var usd = UsdAmount.ToNanosFloor(limits.Usd);
        var tokens = Math.Max(0, limits.Tokens);
        var calls = Math.Max(0, limits.Calls);
        var fraction = 0d;
        if (usd > 0)
        {
            fraction = Math.Max(fraction, (double)used[0] / usd);
        }

        if (tokens > 0)
        {
            fraction = Math.Max(fraction, (double)used[1] / tokens);
        }

        if (calls > 0)
        {
            fraction = Math.Max(fraction, (double)used[2] / calls);
        }

        return Math.Floor(fraction * 1_000_000) / AdmissionConstants.FractionScale;
    }

    /// <summary>
    /// Folds one rate window (its calls <paramref name="n"/>, tokens <paramref name="k"/> and oldest second
    /// <paramref name="oldest"/>, -1 none, before the call) into the x-ratelimit snapshots: each keeps the tighter of
    /// the user's and the key's limits (the user's on a tie), resetting when the window's oldest second leaves it.
    /// </summary>
    internal static void Window(ref RateLimitSnapshot requests, ref RateLimitSnapshot tokens, long n, long k, long oldest, RateLimits limits, bool taken, long callTokens, long nowMs)
    {
        if (taken)
        {
            n++;
            k += callTokens;
            if (oldest < 0)
            {
                oldest = AdmissionConstants.Second(nowMs);
            }
        }

        requests = Tighter(requests, Math.Max(0, limits.RequestsPerMinute), Math.Max(0, limits.RequestsPerMinute) - n);
        tokens = Tighter(tokens, Math.Max(0, limits.TokensPerMinute), Math.Max(0, limits.TokensPerMinute) - k);

        RateLimitSnapshot Tighter(RateLimitSnapshot best, long limit, long remaining)
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

            var reset = oldest >= 0 ? ((oldest + 1) * 1000) + 60_000 - nowMs : 0;
            return new RateLimitSnapshot(limit, remaining, TimeSpan.FromMilliseconds(reset));
        }
    }
}
