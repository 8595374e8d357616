using System.Globalization;
using LlmGateway.Errors;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Budgets;

/// <summary>
/// The one place that turns an admission store's refusal (and the guards before it) into the caller's error: status,
/// code, type and a message naming the scope and the limit. LLM calls (<see cref="BudgetGuard"/>) and tool calls
/// (<see cref="Tools.ToolCallAdmission"/>) answer the same refusal the same way.
/// </summary>
internal static class AdmissionErrors
{
    /// <summary>The error for a refused admission; <paramref name="user"/>, <paramref name="team"/>, <paramref name="runId"/> and <paramref name="keyId"/> name the scopes.</summary>
    public static GatewayError Refused(AdmissionResult result, string user, string? team, string? runId, string keyId)
    {
        var scope = result.FailedScope switch
        {
            AdmissionScope.User => $"user '{user}'",
            AdmissionScope.Team => $"team '{team}'",
            AdmissionScope.Run => $"run '{runId}'",
            AdmissionScope.Key => $"key '{keyId}'",
            _ => "caller",
        };
        var value = result.LimitValue.ToString("0.######", CultureInfo.InvariantCulture);
        var limit = result.FailedLimit switch
        {
            AdmissionLimit.Usd => $"USD budget of ${value}",
            AdmissionLimit.Tokens => $"token budget of {value} tokens",
            AdmissionLimit.Calls when result.FailedScope == AdmissionScope.Run => $"limit of {value} calls (LLM and tool calls together)",
            AdmissionLimit.Calls => $"limit of {value} calls",
            AdmissionLimit.RequestsPerMinute => $"rate limit of {value} requests per minute",
            AdmissionLimit.TokensPerMinute => $"rate limit of {value} tokens per minute",
            AdmissionLimit.InFlight => $"limit of {value} calls in flight at once",
            AdmissionLimit.Deadline => $"deadline of {value} s from its first call",
            AdmissionLimit.Repeats => $"limit of {value} identical requests",
            _ => "limit",
        };
        var retry = result.RetryAfter is { } after
            ? $" Capacity returns in {Math.Max(1, Math.Ceiling(after.TotalSeconds)):0} s."
            : string.Empty;

        return result.Rejection switch
        {
            AdmissionRejection.RunHalted => new GatewayError(StatusCodes.Status403Forbidden, GatewayErrorCodes.RunHalted, "permission_error",
                $"The run '{runId}' was halted by an operator (POST /admin/runs/{{id}}/resume lifts it).", false),
            AdmissionRejection.UserHalted => new GatewayError(StatusCodes.Status403Forbidden, GatewayErrorCodes.UserHalted, "permission_error",
                $"The user '{user}' was halted by an operator.", false),
            AdmissionRejection.RunDeadlineExceeded => new GatewayError(StatusCodes.Status429TooManyRequests, GatewayErrorCodes.RunDeadlineExceeded, "rate_limit_error",
                $"The {scope} passed its {limit}.", false),
            AdmissionRejection.LoopDetected => new GatewayError(StatusCodes.Status429TooManyRequests, GatewayErrorCodes.LoopDetected, "rate_limit_error",
                $"The same request was sent more often than the {scope}'s {limit}; the agent looks stuck in a loop.", false),
            AdmissionRejection.RateLimitExceeded => new GatewayError(StatusCodes.Status429TooManyRequests, GatewayErrorCodes.RateLimitExceeded, "rate_limit_error",
                $"The {scope} reached its {limit}.{retry}", true, null, result.RetryAfter ?? TimeSpan.FromSeconds(1)),
            AdmissionRejection.StoreFull => StoreFull(result.RetryAfter),
            _ => Budget($"The {scope} has used up its {limit}.{(result.RetryAfter is null ? string.Empty : $" It resets in {Math.Ceiling(result.RetryAfter.Value.TotalSeconds):0} s.")}", result.RetryAfter),
        };
    }

    /// <summary>The in-memory store has no room for a new run.</summary>
    public static GatewayError StoreFull(TimeSpan? retryAfter) =>
        new(StatusCodes.Status503ServiceUnavailable, GatewayErrorCodes.StoreFull, "server_error",
            "The gateway tracks as many runs as it may (Gateway:Store:MaxRuns) and this call would start a new one. Retry shortly, when idle runs have expired, or continue a run already started.",
            true, null, retryAfter ?? TimeSpan.FromSeconds(1));

    /// <summary>A budget refusal (429 budget_exceeded, insufficient_quota).</summary>
    public static GatewayError Budget(string message, TimeSpan? retryAfter) =>
        new(StatusCodes.Status429TooManyRequests, GatewayErrorCodes.BudgetExceeded, "insufficient_quota", message, false, null, retryAfter);

    /// <summary>The prompt does not fit the model's context window or the run's input cap.</summary>
    public static GatewayError ContextTooLong(string message) =>
        new(StatusCodes.Status400BadRequest, GatewayErrorCodes.ContextLengthExceeded, "invalid_request_error", message, false, "messages");
}
