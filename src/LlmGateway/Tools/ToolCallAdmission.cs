using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Identity;
using LlmGateway.Telemetry;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Tools;

/// <summary>
/// A tool call against the run's limits: admitted through the shared admission store (halts, deadline, the calls
/// ceiling, in-flight limits), then settled at no cost, so it counts once against the run's calls.
/// </summary>
internal sealed class ToolCallAdmission(IAdmissionStore admissions, GatewayMetrics metrics, ILogger<ToolCallAdmission> logger)
{
    public async ValueTask<(Reservation? Reservation, GatewayError? Error)> AdmitAsync(GatewayConfig config, CallerKey caller, string? runId, string requestId, CancellationToken cancellationToken)
    {
        var runs = caller.Policy.Runs;
        var admission = new AdmissionRequest
        {
            User = caller.User,
            KeyId = caller.Id,
            RunId = runId,
            RunBudget = new BudgetLimits(0m, 0, runs.Calls),
            RunDeadline = runs.Deadline ?? TimeSpan.Zero,
            ReservationTtl = config.Options.Store.ReservationTtl,
        };

        AdmissionResult result;
        try
        {
            result = await admissions.ReserveAsync(admission, cancellationToken).ConfigureAwait(false);
        }
        catch (AdmissionStoreUnavailableException ex)
        {
            var policy = config.Options.Store.OnUnavailable;
            metrics.RecordStoreUnavailable(policy == StoreFailurePolicy.Allow, ex);
            BudgetLog.StoreUnavailable(logger, requestId, policy.ToString(), ex.Message);
            return policy == StoreFailurePolicy.Allow ? (null, null) : (null, ToolCallResponses.StoreUnavailable());
        }

        if (result.IsAdmitted)
        {
            return (result.Reservation, null);
        }

        return (null, AdmissionErrors.Refused(result, caller.User, caller.Team, runId, caller.Id));
    }

    /// <summary>
    /// An admitted tool call counts once against the run's calls ceiling (it costs nothing), unless
    /// <paramref name="countsAsCall"/> is false: its reservation is then released.
    /// </summary>
    public async ValueTask FinishAsync(Reservation reservation, bool countsAsCall, string requestId)
    {
        try
        {
            if (countsAsCall)
            {
                await admissions.SettleAsync(reservation, 0m, 0, CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                await admissions.ReleaseAsync(reservation, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (AdmissionStoreUnavailableException ex)
        {
            BudgetLog.SettleFailed(logger, requestId, reservation.Id, 0m, ex.Message);
        }
    }
}
