using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Deployments;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using Polly.CircuitBreaker;

namespace LlmGateway.Resilience;

/// <summary>The choice of a deployment per attempt (see <see cref="DeploymentChooser"/>) and whether one can take a call.</summary>
internal sealed partial class UpstreamResilience
{
    /// <summary>
    /// The deployment of the next attempt: one the call has not seen fail (all of them again once every one has), whose
    /// circuit and bulkhead can take it, and whose own Rpm/Tpm window has room for the call's reservation.
    /// </summary>
    private async ValueTask<(DeploymentRoute? Deployment, AttemptOutcome Refusal)> ChooseAsync(LlmCall call, ModelRoute model, CancellationToken cancellationToken)
    {
        var all = model.Deployments.Length == 64 ? ulong.MaxValue : (1UL << model.Deployments.Length) - 1;
        if ((call.FailedDeployments & all) == all)
        {
            call.FailedDeployments = 0;
        }

        var skip = call.FailedDeployments;
        TimeSpan? soonest = null;
        var single = model.Deployments.Length == 1;
        while (true)
        {
            // Counted in flight from here (least-busy picks see it at once); every way out without the deployment ends the count.
            var deployment = single
                ? (skip == 0 ? model.Deployments[0] : null)
                : _chooser.PickAndEnter(model, call.RunId, skip, this, ref soonest);
            if (deployment is null)
            {
                break;
            }

            if (single)
            {
                _chooser.StateOf(deployment).Enter();
            }

            if (!deployment.HasRateLimits)
            {
                return (deployment, default);
            }

            DeploymentRateResult taken;
            try
            {
                taken = await _rates.TryTakeAsync(deployment, call.Admission?.Reservation?.ReservedTokens ?? 0, cancellationToken).ConfigureAwait(false);
            }
            catch (AdmissionStoreUnavailableException ex)
            {
                var policy = _config.Current.Options.Store.OnUnavailable;
                _metrics.RecordStoreUnavailable(policy == StoreFailurePolicy.Allow, ex);
                ResilienceLog.DeploymentStoreUnavailable(_logger, call.RequestId, policy.ToString(), ex.Message);
                if (policy == StoreFailurePolicy.Allow)
                {
                    return (deployment, default);
                }

                _chooser.StateOf(deployment).Exit();
                call.PendingError = GatewayError.StoreUnavailable($"The rate-limit store is unavailable, so the call cannot be counted against deployment '{deployment.Name}' of model '{model.Name}'; retry shortly.");
                return (null, AttemptOutcome.Delivered);
            }
            catch
            {
                // Cancelled (the client went away) or anything else: the pick never became an attempt.
                _chooser.StateOf(deployment).Exit();
                throw;
            }

            if (taken.Taken)
            {
                call.DeploymentTicket = taken.Ticket;
                call.TicketDeployment = deployment;
                return (deployment, default);
            }

            if (taken.RetryAfter is { } wait && (soonest is null || wait < soonest))
            {
                soonest = wait;
            }

            _chooser.StateOf(deployment).Exit();
            skip |= 1UL << deployment.Index;
        }

        return (null, new AttemptOutcome(AttemptKind.NoDeployment, 503, soonest, "no_deployment"));
    }

    /// <inheritdoc />
    public bool CanTake(DeploymentRoute deployment, out TimeSpan? retryAfter)
    {
        retryAfter = null;
        if (!deployment.Provider.IsUsable)
        {
            return false;
        }

        if (_breakers.TryGetValue(deployment.Upstream, out var breaker) && breaker.State.CircuitState is CircuitState.Open or CircuitState.Isolated)
        {
            var left = breaker.OpenUntil - _time.GetUtcNow();
            retryAfter = left > TimeSpan.Zero ? left : TimeSpan.Zero;
            return false;
        }

        if (deployment.Provider.Options.MaxConcurrency > 0 && _bulkheads.TryGetValue(deployment.Provider.Name, out var bulkhead) && bulkhead.IsFull)
        {
            retryAfter = TimeSpan.FromSeconds(1);
            return false;
        }

        return true;
    }

    /// <summary>True when a deployment of the call's model that has not failed for it can take the call now: a retry needs no wait.</summary>
    private bool HasFreeDeployment(LlmCall call)
    {
        var deployments = call.ServedModel.Deployments;
        if (deployments.Length == 1)
        {
            return false;
        }

        for (var i = 0; i < deployments.Length; i++)
        {
            if ((call.FailedDeployments & (1UL << i)) == 0 && CanTake(deployments[i], out _))
            {
                return true;
            }
        }

        return false;
    }
}
