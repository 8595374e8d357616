using System.Globalization;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Budgets;

/// <summary>OpenAI's x-ratelimit-* headers, describing the caller's gateway limits (never the provider's).</summary>
internal static class RateLimitHeaders
{
    public static void Write(IHeaderDictionary headers, AdmissionResult? admission)
    {
        if (admission is null)
        {
            return;
        }

        Write(headers, admission.Requests, "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests", "x-ratelimit-reset-requests");
        Write(headers, admission.Tokens, "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens");
    }

    private static void Write(IHeaderDictionary headers, RateLimitSnapshot snapshot, string limit, string remaining, string reset)
    {
        if (snapshot.Limit <= 0)
        {
            return;
        }

        headers[limit] = snapshot.Limit.ToString(CultureInfo.InvariantCulture);
        headers[remaining] = Math.Max(0, snapshot.Remaining).ToString(CultureInfo.InvariantCulture);
        headers[reset] = FormatDuration(snapshot.ResetAfter);
    }

    /// <summary>OpenAI's duration format: "250ms", "1s", "6m0s".</summary>
    internal static string FormatDuration(TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            return "0s";
        }

        if (value < TimeSpan.FromSeconds(1))
        {
            return ((long)Math.Ceiling(value.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture) + "ms";
        }

        var seconds = (long)Math.Ceiling(value.TotalSeconds);
        return seconds < 60
            ? seconds.ToString(CultureInfo.InvariantCulture) + "s"
            : (seconds / 60).ToString(CultureInfo.InvariantCulture) + "m" + (seconds % 60).ToString(CultureInfo.InvariantCulture) + "s";
    }
}
