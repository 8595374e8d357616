namespace LlmGateway.Budgets;

internal static class AdmissionConstants
{
    /// <summary>RPM and TPM are per minute: the sliding window is 60 s.</summary>
    public const long RateWindowMs = 60_000;

    /// <summary>Fractions cross the Redis boundary as parts per million; both stores round the same way.</summary>
    public const double FractionScale = 1_000_000;
}
