using System.Globalization;
using LlmGateway.Configuration;

namespace LlmGateway.Budgets;

/// <summary>
/// Budget periods in UTC calendar terms: Day, ISO Week (Monday to Monday, ISO week-numbering year), calendar Month,
/// or Total (never resets). The key names the period in store keys and the admin API ("d20261121", "w2026-47",
/// "m202611", "total"); the end is when the budget resets (Retry-After, Redis key lifetime).
/// </summary>
internal static class BudgetPeriods
{
    public const string TotalKey = "total";

    /// <summary>The key of the period containing <paramref name="instant"/>.</summary>
    public static string GetKey(BudgetPeriod period, DateTimeOffset instant)
    {
        var utc = instant.UtcDateTime;
        return period switch
        {
            BudgetPeriod.Day => string.Create(CultureInfo.InvariantCulture, $"d{utc.Year:D4}{utc.Month:D2}{utc.Day:D2}"),
            BudgetPeriod.Week => string.Create(CultureInfo.InvariantCulture, $"w{ISOWeek.GetYear(utc):D4}-{ISOWeek.GetWeekOfYear(utc):D2}"),
            BudgetPeriod.Month => string.Create(CultureInfo.InvariantCulture, $"m{utc.Year:D4}{utc.Month:D2}"),
            _ => TotalKey,
        };
    }

    /// <summary>The first instant after the period containing <paramref name="instant"/>; null for Total.</summary>
    public static DateTimeOffset? GetEnd(BudgetPeriod period, DateTimeOffset instant)
    {
        var day = instant.UtcDateTime.Date;
        return period switch
        {
            BudgetPeriod.Day => new DateTimeOffset(day.AddDays(1), TimeSpan.Zero),
            BudgetPeriod.Week => new DateTimeOffset(day.AddDays(7 - DaysSinceMonday(day)), TimeSpan.Zero),
            BudgetPeriod.Month => new DateTimeOffset(new DateTime(day.Year, day.Month, 1, 0, 0, 0, DateTimeKind.Utc).AddMonths(1), TimeSpan.Zero),
            _ => null,
        };
    }

    /// <summary>
    /// A number that changes exactly when the period does (days or weeks since 1970, months since year 0), so a
    /// caller can tell "same period as last time" without formatting the key.
    /// </summary>
    public static long GetId(BudgetPeriod period, long unixMilliseconds)
    {
        const long MsPerDay = 86_400_000;
        var days = unixMilliseconds >= 0 ? unixMilliseconds / MsPerDay : ((unixMilliseconds + 1) / MsPerDay) - 1;
        switch (period)
        {
            case BudgetPeriod.Day:
                return days;
            case BudgetPeriod.Week:
                // 1970-01-01 was a Thursday: the Monday that starts its ISO week is day -3.
                var shifted = days + 3;
                return shifted >= 0 ? shifted / 7 : ((shifted + 1) / 7) - 1;
            case BudgetPeriod.Month:
                var date = DateTimeOffset.FromUnixTimeMilliseconds(unixMilliseconds).UtcDateTime;
                return (date.Year * 12L) + date.Month - 1;
            default:
                return 0;
        }
    }

    private static int DaysSinceMonday(DateTime day) => ((int)day.DayOfWeek + 6) % 7;
}
