namespace LlmGateway.Budgets;

internal static class AdmissionConstants
{
    /// <summary>RPM and TPM are per minute: a call counts for 60 s from its admission (rounded up to its second's end).</summary>
    public const long RateWindowMs = 60_000;

    /// <summary>Rate windows and reservation expiry are kept per whole second: the resolution of both stores.</summary>
    public const long SecondMs = 1000;

    /// <summary>Seconds of calls a rate window holds: the 60 of the window and the one now running.</summary>
    public const int WindowSeconds = (int)(RateWindowMs / SecondMs) + 1;

    /// <summary>Fractions cross the Redis boundary as parts per million; both stores round the same way.</summary>
    public const double FractionScale = 1_000_000;

    /// <summary>The second an instant falls in (Unix seconds; instants are never before 1970).</summary>
    public static long Second(long ms) => ms / SecondMs;

    /// <summary>Reservations expire on multiples of this many seconds: a store tracks one group per step of TTL.</summary>
    public const long ExpiryStepSeconds = 10;

    /// <summary>
    /// A reservation expiring at <paramref name="ms"/> is held until the start of this second, rounded up to a
    /// multiple of <see cref="ExpiryStepSeconds"/> (never shorter; a lost reservation's TTL is minutes).
    /// </summary>
    public static long ExpirySecond(long ms)
    {
        var second = (ms + SecondMs - 1) / SecondMs;
        return (second + ExpiryStepSeconds - 1) / ExpiryStepSeconds * ExpiryStepSeconds;
    }

    /// <summary>When the calls of second <paramref name="second"/> leave a rate window: the end of that second plus 60 s.</summary>
    public static long LeavesWindowMs(long second) => ((second + 1) * SecondMs) + RateWindowMs;
}
