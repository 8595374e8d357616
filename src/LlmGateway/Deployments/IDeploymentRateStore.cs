namespace LlmGateway.Deployments;

/// <summary>
/// The Rpm/Tpm windows of deployments: in memory, or in Redis (shared by every replica) when Gateway:Redis is set.
/// The windows follow the users' rules exactly (<see cref="Budgets.RateWindow"/>): a call counts from the second it was
/// taken until that second plus 60 s, and its tokens are corrected when it is settled.
/// </summary>
internal interface IDeploymentRateStore
{
    /// <summary>Takes one call of <paramref name="tokens"/> in the deployment's window when it has room.</summary>
    /// <exception cref="Budgets.AdmissionStoreUnavailableException">The store did not answer in time.</exception>
    ValueTask<DeploymentRateResult> TryTakeAsync(DeploymentRoute deployment, long tokens, CancellationToken cancellationToken);

    /// <summary>Replaces a taken call's reserved tokens by the tokens it used, while its second is in the window.</summary>
    ValueTask SettleAsync(DeploymentRoute deployment, DeploymentRateTicket ticket, long usedTokens);
}

/// <summary>A call taken in a deployment's window: its second and the tokens it reserved there.</summary>
internal readonly record struct DeploymentRateTicket(long Second, long ReservedTokens);

/// <param name="Taken">True when the call took a place in the window.</param>
/// <param name="RetryAfter">When refused: how long until the window has room; null when it never will (the call alone exceeds Tpm).</param>
internal readonly record struct DeploymentRateResult(bool Taken, DeploymentRateTicket Ticket, TimeSpan? RetryAfter);
