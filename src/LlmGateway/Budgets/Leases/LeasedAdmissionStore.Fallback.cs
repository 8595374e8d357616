namespace LlmGateway.Budgets.Leases;

/// <summary>Where a call goes when its blocks cannot admit it, and the per-call step of a call's run.</summary>
internal sealed partial class LeasedAdmissionStore
{
    /// <summary>
    /// Near a limit, or halted: this replica gives back its unused room in the call's scopes, and the per-call path
    /// decides exactly (and says which limit refused, with its Retry-After).
    /// </summary>
    private async ValueTask<AdmissionResult> DecideExactlyAsync(AdmissionRequest request, LeasePart[] parts, long ei, CancellationToken cancellationToken)
    {
        foreach (var part in parts)
        {
            await CloseAsync(part.Scope).ConfigureAwait(false);
        }

        if (request.RunId is { } runId)
        {
            // The per-call path decides the run too: this replica's block of it, if any, writes back and lets go first.
            await LetGoOfRunAsync(runId).ConfigureAwait(false);
        }

        var exact = await _inner.ReserveAsync(request, cancellationToken).ConfigureAwait(false);
        if (exact.IsAdmitted || exact.Rejection is not (AdmissionRejection.BudgetExceeded or AdmissionRejection.RateLimitExceeded)
            || exact.FailedScope is not (AdmissionScope.User or AdmissionScope.Team or AdmissionScope.Key))
        {
            return exact;
        }

        // Under a burst, another call's grant may have taken the room this call lacked between the give-back above and
        // the exact decision: it is in this replica's block now. Admitting on a block is always within the limits, so
        // the call gets it rather than a false refusal (a 200-call burst on one replica admitted 32 of the 33 that fit).
        foreach (var part in parts)
        {
            Task<bool>? granting;
            lock (part.Scope.Gate)
            {
                granting = part.Scope.Granting;
            }

            if (granting is not null)
            {
                try
                {
                    await granting.WaitAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (AdmissionStoreUnavailableException)
                {
                    return exact;
                }
            }
        }

        if (TryAdmit(parts, ei, NowMs()) is { } late)
        {
            return request.RunId is null ? late : await WithRunAsync(request, late, cancellationToken).ConfigureAwait(false);
        }

        return exact;
    }

    /// <summary>
    /// A call of a run that its blocks admitted: its run decides (one script on the run's keys). Refused, or Redis
    /// failing, the call's holds on the blocks are given back and the run's answer stands.
    /// </summary>
    private async ValueTask<AdmissionResult> WithRunAsync(AdmissionRequest request, AdmissionResult admitted, CancellationToken cancellationToken)
    {
        var held = (LeasedReservation)admitted.Reservation!;
        AdmissionResult run;
        try
        {
            run = await DecideRunAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await FinishAsync(held, default).ConfigureAwait(false);
            throw;
        }

        if (!run.IsAdmitted)
        {
            await FinishAsync(held, default).ConfigureAwait(false);
            return run;
        }

        held.Run = run.Reservation;
        held.Step = run.Reservation.Step;
        return new AdmissionResult(held, AdmissionRejection.None, AdmissionScope.None, AdmissionLimit.None, 0, null, admitted.Requests, admitted.Tokens,
            admitted.SpentFractions with { Run = run.SpentFractions.Run });
    }
}
