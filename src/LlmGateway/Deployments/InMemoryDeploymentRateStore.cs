using System.Collections.Concurrent;
using LlmGateway.Budgets;

namespace LlmGateway.Deployments;

/// <summary>The deployments' windows in this process: one <see cref="RateWindow"/> per deployment (bounded by the config).</summary>
internal sealed class InMemoryDeploymentRateStore(TimeProvider time) : IDeploymentRateStore
{
    private readonly ConcurrentDictionary<string, RateWindow> _windows = new(StringComparer.Ordinal);

    public ValueTask<DeploymentRateResult> TryTakeAsync(DeploymentRoute deployment, long tokens, CancellationToken cancellationToken)
    {
        var window = _windows.GetOrAdd(deployment.Key, static _ => new RateWindow());
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        var second = AdmissionConstants.Second(now);
        lock (window)
        {
            window.Purge(second);
            if (InMemoryAdmissionStore.CheckRate(window, new RateLimits(deployment.Rpm, deployment.Tpm), tokens, now, out _, out var retryAtMs))
            {
                return new(new DeploymentRateResult(false, default, retryAtMs < 0 ? null : TimeSpan.FromMilliseconds(Math.Max(0, retryAtMs - now))));
            }

            window.Add(second, tokens);
        }

        return new(new DeploymentRateResult(true, new DeploymentRateTicket(second, tokens), null));
    }

    public ValueTask SettleAsync(DeploymentRoute deployment, DeploymentRateTicket ticket, long usedTokens)
    {
        if (_windows.TryGetValue(deployment.Key, out var window))
        {
            lock (window)
            {
                window.Correct(ticket.Second, ticket.ReservedTokens, usedTokens);
            }
        }

        return default;
    }
}
