using System.Globalization;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Budgets;

/// <summary>
/// OpenAI's x-ratelimit-* headers, describing the caller's gateway limits (never the provider's); on Anthropic's routes
/// also the same figures as Anthropic names them (anthropic-ratelimit-requests-limit, -remaining, and -reset as an
/// RFC 3339 time), which Anthropic's SDKs and agents read.
/// </summary>
internal static class RateLimitHeaders
{
    // Every answer carries these headers: the values that repeat (small numbers, durations under a minute, the
    // configured limits) are formatted once rather than allocated per call.
    private const int CachedNumbers = 1000;
    private static readonly string?[] Numbers = new string?[CachedNumbers];
    private static readonly string?[] Milliseconds = new string?[CachedNumbers];
    private static readonly string?[] Seconds = new string?[60];
    private static FormattedLimit? s_requestsLimit;
    private static FormattedLimit? s_tokensLimit;

    /// <param name="anthropic">The call is on Anthropic's routes: the anthropic-ratelimit-* headers too.</param>
    public static void Write(IHeaderDictionary headers, AdmissionResult? admission, bool anthropic = false)
    {
        if (admission is null)
        {
            return;
        }

        Write(headers, admission.Requests, ref s_requestsLimit, "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests");
        Write(headers, admission.Tokens, ref s_tokensLimit, "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens");
        if (anthropic)
        {
            var now = DateTimeOffset.UtcNow;
            WriteAnthropic(headers, admission.Requests, now, "anthropic-ratelimit-requests-limit", "anthropic-ratelimit-requests-remaining", "anthropic-ratelimit-requests-reset");
            WriteAnthropic(headers, admission.Tokens, now, "anthropic-ratelimit-tokens-limit", "anthropic-ratelimit-tokens-remaining", "anthropic-ratelimit-tokens-reset");
        }
    }

    private static void WriteAnthropic(IHeaderDictionary headers, RateLimitSnapshot snapshot, DateTimeOffset now, string limit, string remaining, string reset)
    {
        if (snapshot.Limit <= 0)
        {
            return;
        }

        headers[limit] = Number(snapshot.Limit);
        headers[remaining] = Number(Math.Max(0, snapshot.Remaining));
        var at = now + (snapshot.ResetAfter > TimeSpan.Zero ? snapshot.ResetAfter : TimeSpan.Zero);
        headers[reset] = at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
    }

    private static void Write(IHeaderDictionary headers, RateLimitSnapshot snapshot, ref FormattedLimit? lastLimit, string limit, string remaining, string reset)
    {
        if (snapshot.Limit <= 0)
        {
            return;
        }

        // The limit is a configured value: the last one formatted is almost always the one asked for.
        var cached = Volatile.Read(ref lastLimit);
        if (cached is null || cached.Value != snapshot.Limit)
        {
            cached = new FormattedLimit(snapshot.Limit, Number(snapshot.Limit));
            Volatile.Write(ref lastLimit, cached);
        }

        headers[limit] = cached.Text;
        headers[remaining] = Number(Math.Max(0, snapshot.Remaining));
        headers[reset] = FormatDuration(snapshot.ResetAfter);
    }

    /// <summary>A number in invariant culture; those under 1,000 are formatted once.</summary>
    internal static string Number(long value) =>
        (ulong)value < CachedNumbers
            ? Numbers[value] ??= value.ToString(CultureInfo.InvariantCulture)
            : value.ToString(CultureInfo.InvariantCulture);

    /// <summary>OpenAI's duration format: "250ms", "1s", "6m0s".</summary>
    internal static string FormatDuration(TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            return "0s";
        }

        if (value < TimeSpan.FromSeconds(1))
        {
            var ms = (long)Math.Ceiling(value.TotalMilliseconds);
            return ms < CachedNumbers
                ? Milliseconds[ms] ??= ms.ToString(CultureInfo.InvariantCulture) + "ms"
                : ms.ToString(CultureInfo.InvariantCulture) + "ms";
        }

        var seconds = (long)Math.Ceiling(value.TotalSeconds);
        return seconds < 60
            ? Seconds[seconds] ??= seconds.ToString(CultureInfo.InvariantCulture) + "s"
            : (seconds / 60).ToString(CultureInfo.InvariantCulture) + "m" + (seconds % 60).ToString(CultureInfo.InvariantCulture) + "s";
    }

    private sealed record FormattedLimit(long Value, string Text);
}
