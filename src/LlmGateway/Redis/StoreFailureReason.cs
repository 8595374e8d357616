using LlmGateway.Telemetry;

namespace LlmGateway.Redis;

/// <summary>Why the shared store could not decide: the <c>reason</c> of <c>llm_gateway_store_unavailable_total</c>.</summary>
internal static class StoreFailureReason
{
    /// <summary>
    /// <see cref="TelemetryTagValues.Replicas"/> when Redis answered but too few replicas acknowledged the write
    /// (Gateway:Store:WaitForReplicas), <see cref="TelemetryTagValues.Timeout"/> when it did not answer in time, else
    /// <see cref="TelemetryTagValues.Error"/> (not connected, a server error): found anywhere in the exception's causes.
    /// </summary>
    public static string Of(Exception exception)
    {
        var reason = TelemetryTagValues.Error;
        for (Exception? cause = exception; cause is not null; cause = cause.InnerException)
        {
            if (cause is RedisReplicationTimeoutException)
            {
                return TelemetryTagValues.Replicas;
            }

            if (cause is TimeoutException)
            {
                reason = TelemetryTagValues.Timeout;
            }
        }

        return reason;
    }
}
