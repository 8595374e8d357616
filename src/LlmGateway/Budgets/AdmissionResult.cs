using LlmGateway.Errors;

namespace LlmGateway.Budgets;

/// <summary>The store's answer to <see cref="IAdmissionStore.ReserveAsync"/>: a reservation, or which limit refused the call.</summary>
public sealed class AdmissionResult
{
    internal AdmissionResult(
        Reservation? reservation,
        AdmissionRejection rejection,
        AdmissionScope failedScope,
        AdmissionLimit failedLimit,
        decimal limitValue,
        TimeSpan? retryAfter,
        RateLimitSnapshot requests,
        RateLimitSnapshot tokens,
        BudgetFractions spentFractions)
    {
        Reservation = reservation;
        Rejection = rejection;
        FailedScope = failedScope;
        FailedLimit = failedLimit;
        LimitValue = limitValue;
        RetryAfter = retryAfter;
        Requests = requests;
        Tokens = tokens;
        SpentFractions = spentFractions;
    }

    [System.Diagnostics.CodeAnalysis.MemberNotNullWhen(true, nameof(Reservation))]
    public bool IsAdmitted => Reservation is not null;

    /// <summary>The reservation to settle or release; null when rejected.</summary>
    public Reservation? Reservation { get; }

    public AdmissionRejection Rejection { get; }

    /// <summary>The CONTRACT.md error code of the rejection (<c>budget_exceeded</c>, ...); null when admitted.</summary>
    public string? ErrorCode => Rejection switch
    {
        AdmissionRejection.None => null,
        AdmissionRejection.BudgetExceeded => GatewayErrorCodes.BudgetExceeded,
        AdmissionRejection.RateLimitExceeded => GatewayErrorCodes.RateLimitExceeded,
        AdmissionRejection.RunDeadlineExceeded => GatewayErrorCodes.RunDeadlineExceeded,
        AdmissionRejection.LoopDetected => GatewayErrorCodes.LoopDetected,
        AdmissionRejection.RunHalted => GatewayErrorCodes.RunHalted,
        AdmissionRejection.StoreFull => GatewayErrorCodes.StoreFull,
        _ => GatewayErrorCodes.UserHalted,
    };

    /// <summary>Whose limit refused the call.</summary>
    public AdmissionScope FailedScope { get; }

    /// <summary>Which limit of <see cref="FailedScope"/> refused the call.</summary>
    public AdmissionLimit FailedLimit { get; }

    /// <summary>
    /// The value of <see cref="FailedLimit"/>: USD, tokens, calls, requests or tokens per minute, in-flight calls,
    /// deadline seconds or repeats, for the error message.
    /// </summary>
    public decimal LimitValue { get; }

    /// <summary>
    /// When a retry can succeed: rate limits (time until capacity), in-flight caps (short), budgets of a user or
    /// team whose period resets (time until it does). Null when waiting does not help, including a request
    /// larger than the TPM limit itself.
    /// </summary>
    public TimeSpan? RetryAfter { get; }

    /// <summary>For <c>x-ratelimit-*-requests</c>: the tightest of the user's and key's RPM limits.</summary>
    public RateLimitSnapshot Requests { get; }

    /// <summary>For <c>x-ratelimit-*-tokens</c>: the tightest of the user's and key's TPM limits.</summary>
    public RateLimitSnapshot Tokens { get; }

    /// <summary>How full each budget was before this call ((spent + reserved) / limit), for budget downgrades.</summary>
    public BudgetFractions SpentFractions { get; }
}

/// <summary>Why a call was refused; each maps to one CONTRACT.md error code.</summary>
public enum AdmissionRejection
{
    None,
    BudgetExceeded,
    RateLimitExceeded,
    RunDeadlineExceeded,
    LoopDetected,
    RunHalted,
    UserHalted,

    /// <summary>The in-memory store tracks as many runs as it may (Gateway:Store:MaxRuns) and this call would start another.</summary>
    StoreFull,
}

/// <summary>Whose limit refused a call.</summary>
public enum AdmissionScope
{
    None,
    User,
    Team,
    Run,
    Key,
}

/// <summary>Which limit refused a call.</summary>
public enum AdmissionLimit
{
    None,
    Usd,
    Tokens,
    Calls,
    RequestsPerMinute,
    TokensPerMinute,
    InFlight,
    Deadline,
    Repeats,
}

/// <summary>One OpenAI rate-limit header triple; <see cref="Limit"/> 0 means no limit applies (send no headers).</summary>
/// <param name="ResetAfter">Time until the oldest second's calls leave the window and capacity comes back.</param>
public readonly record struct RateLimitSnapshot(long Limit, long Remaining, TimeSpan ResetAfter);

/// <summary>Fraction (0..1+, the largest over USD, tokens and calls) of each budget already spent or reserved; 0 when unlimited.</summary>
public readonly record struct BudgetFractions(double User, double Team, double Run)
{
    public double Max => Math.Max(User, Math.Max(Team, Run));
}
