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

    /// <summary>The second an instant falls in (Unix seconds).</summary>
    public static long Second(long ms) => Math.DivRem(ms, SecondMs) is var (q, r) && r < 0 ? q - 1 : q;

    /// <summary>A reservation expiring at <paramref name="ms"/> is held until the start of this second (rounded up: never shorter).</summary>
    public static long ExpirySecond(long ms) => -Second(-ms);

    /// <summary>When the calls of second <paramref name="second"/> leave a rate window: the end of that second plus 60 s.</summary>
    public static long LeavesWindowMs(long second) => ((second + 1) * SecondMs) + RateWindowMs;
}
