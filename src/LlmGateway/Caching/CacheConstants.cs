namespace LlmGateway.Caching;

/// <summary>Header names and values of the response cache and of run record/replay (CONTRACT.md).</summary>
internal static class CacheHeaders
{
    public const string Cache = "X-Gateway-Cache";
    public const string Ttl = "X-Gateway-Cache-Ttl";
    public const string Record = "X-Gateway-Record";
    public const string ReplayOf = "X-Gateway-Replay-Of";

    /// <summary>On a replayed answer: the step of the recording it came from.</summary>
    public const string ReplayStep = "X-Gateway-Replay-Step";

    public const string Hit = "HIT";
    public const string Miss = "MISS";
    public const string Bypass = "BYPASS";

    public const string NoCache = "no-cache";
    public const string NoStore = "no-store";
    public const string Force = "force";
}

/// <summary>Who may be served an answer cached for another caller.</summary>
internal enum CacheScope
{
    User,
    Team,
    Global,
}

internal static class CacheScopes
{
    public static bool TryParse(string? value, out CacheScope scope) =>
        Enum.TryParse(value, ignoreCase: true, out scope) && Enum.IsDefined(scope) && !int.TryParse(value, out _);
}

/// <summary>Where the response cache's entries live in a shared store.</summary>
internal static class CacheKeys
{
    /// <summary>After Gateway:Store:KeyPrefix: the cache's keys in Redis are <c>{KeyPrefix}cache:{key}</c>.</summary>
    public const string Segment = "cache:";
}
