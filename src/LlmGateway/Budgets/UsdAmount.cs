namespace LlmGateway.Budgets;

/// <summary>
/// Money inside the stores is a whole number of nano-dollars: sums stay exact (a cached token of a cheap model
/// costs tens of nano-dollars) and Redis Lua, whose numbers are doubles, stays exact up to 2^53 nano-dollars
/// (about $9 million per scope and period).
/// </summary>
internal static class UsdAmount
{
    public const long NanosPerUsd = 1_000_000_000;

    private const decimal MaxUsd = 9_000_000m;

    /// <summary>Amounts charged round up: a reservation never holds less than the cost it covers.</summary>
    public static long ToNanosCeiling(decimal usd)
    {
        if (usd <= 0)
        {
            return 0;
        }

        return usd >= MaxUsd ? (long)(MaxUsd * NanosPerUsd) : (long)decimal.Ceiling(usd * NanosPerUsd);
    }

    /// <summary>Limits round down: a limit is never exceeded by rounding.</summary>
    public static long ToNanosFloor(decimal usd)
    {
        if (usd <= 0)
        {
            return 0;
        }

        return usd >= MaxUsd ? (long)(MaxUsd * NanosPerUsd) : (long)decimal.Floor(usd * NanosPerUsd);
    }

    public static decimal ToUsd(long nanos) => nanos / (decimal)NanosPerUsd;
}
