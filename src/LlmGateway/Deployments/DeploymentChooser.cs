using System.Collections.Concurrent;

namespace LlmGateway.Deployments;

/// <summary>Whether a deployment can take a call now (its circuit, its provider's bulkhead); implemented by the resilience layer.</summary>
internal interface IDeploymentHealth
{
    /// <param name="retryAfter">When it cannot: how long until it may (its circuit's remaining break), if known.</param>
    bool CanTake(DeploymentRoute deployment, out TimeSpan? retryAfter);
}

/// <summary>The random numbers of the <c>weighted</c> strategy; tests register a seeded one (thread-safe either way).</summary>
internal sealed class DeploymentRandom(Random? seeded = null)
{
    private readonly Lock _lock = new();

    public double NextDouble()
    {
        if (seeded is null)
        {
            return Random.Shared.NextDouble();
        }

        lock (_lock)
        {
            return seeded.NextDouble();
        }
    }
}

/// <summary>
/// Picks the deployment of a call's next attempt: among those the call has not seen fail and that can take a call
/// (circuit closed or probing, bulkhead not full), the run's sticky one when the model is <c>Sticky: run</c>, else by
/// the model's strategy. Keeps each deployment's in-flight count on this replica (least-busy, and the gauge).
/// </summary>
/// <remarks>
/// Stickiness is a per-replica map of (model, run) to deployment, bounded at <see cref="MaxStickyRuns"/>: when full it
/// is emptied, and the runs in it re-pin on their next call (at worst one prompt-cache miss each). Replicas behind a
/// load balancer that spreads one run over them may pin it to different deployments.
/// </remarks>
internal sealed class DeploymentChooser(DeploymentRandom random)
{
    public const int MaxStickyRuns = 100_000;

    private readonly ConcurrentDictionary<string, DeploymentState> _states = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<(string Model, string Run), string> _sticky = new();
    private int _stickyCount;

    /// <summary>Every deployment state seen so far (bounded by the config's deployments): the in-flight gauge reads it.</summary>
    public ICollection<DeploymentState> States => _states.Values;

    public DeploymentState StateOf(DeploymentRoute deployment) =>
        deployment.State ??= _states.GetOrAdd(deployment.Key, static (_, d) => new DeploymentState(d.Model, d.Name), deployment);

    /// <summary>
    /// The deployment for the next attempt, or null when none outside <paramref name="skip"/> can take it;
    /// <paramref name="soonest"/> then tells the least wait any of them named.
    /// </summary>
    /// <param name="skip">Bits of deployments not to pick (failed for this call, or without room in their window).</param>
    /// <summary>
    /// <see cref="Pick"/>, with the chosen deployment counted in flight before anyone else picks: for least-busy under
    /// a lock of the model, so two calls arriving together never both read the same counts and pile onto one.
    /// The caller ends the count with <see cref="DeploymentState.Exit"/>.
    /// </summary>
    public DeploymentRoute? PickAndEnter(Configuration.ModelRoute model, string? runId, ulong skip, IDeploymentHealth health, ref TimeSpan? soonest)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Strategy != DeploymentStrategy.LeastBusy)
        {
            var picked = Pick(model, runId, skip, health, ref soonest);
            if (picked is not null)
            {
                StateOf(picked).Enter();
            }

            return picked;
        }

        lock (model.Deployments)
        {
            var picked = Pick(model, runId, skip, health, ref soonest);
            if (picked is not null)
            {
                StateOf(picked).Enter();
            }

            return picked;
        }
    }

    public DeploymentRoute? Pick(Configuration.ModelRoute model, string? runId, ulong skip, IDeploymentHealth health, ref TimeSpan? soonest)
    {
        var deployments = model.Deployments;
        ulong open = 0;
        for (var i = 0; i < deployments.Length; i++)
        {
            if ((skip & (1UL << i)) != 0)
            {
                continue;
            }

            if (health.CanTake(deployments[i], out var wait))
            {
                open |= 1UL << i;
            }
            else if (wait is { } w && (soonest is null || w < soonest))
            {
                soonest = w;
            }
        }

        if (open == 0)
        {
            return null;
        }

        var sticky = model.StickyRun && runId is not null;
        if (sticky && _sticky.TryGetValue((model.Name, runId!), out var pinned))
        {
            for (var i = 0; i < deployments.Length; i++)
            {
                if ((open & (1UL << i)) != 0 && deployments[i].Name == pinned)
                {
                    return deployments[i];
                }
            }
        }

        var chosen = model.Strategy == DeploymentStrategy.LeastBusy ? LeastBusy(deployments, open) : Weighted(deployments, open);
        if (sticky)
        {
            Pin(model.Name, runId!, chosen.Name);
        }

        return chosen;
    }

    private DeploymentRoute Weighted(DeploymentRoute[] deployments, ulong open)
    {
        double total = 0;
        var last = -1;
        for (var i = 0; i < deployments.Length; i++)
        {
            if ((open & (1UL << i)) != 0)
            {
                total += deployments[i].Weight;
                last = i;
            }
        }

        var point = random.NextDouble() * total;
        for (var i = 0; i < deployments.Length; i++)
        {
            if ((open & (1UL << i)) != 0)
            {
                point -= deployments[i].Weight;
                if (point < 0)
                {
                    return deployments[i];
                }
            }
        }

        return deployments[last];
    }

    /// <summary>Fewest in flight; among equals the heaviest, then the first listed.</summary>
    private DeploymentRoute LeastBusy(DeploymentRoute[] deployments, ulong open)
    {
        DeploymentRoute? best = null;
        var bestInFlight = int.MaxValue;
        for (var i = 0; i < deployments.Length; i++)
        {
            if ((open & (1UL << i)) == 0)
            {
                continue;
            }

            var inFlight = StateOf(deployments[i]).InFlight;
            if (inFlight < bestInFlight || (inFlight == bestInFlight && deployments[i].Weight > best!.Weight))
            {
                best = deployments[i];
                bestInFlight = inFlight;
            }
        }

        return best!;
    }

    private void Pin(string model, string run, string deployment)
    {
        if (_sticky.TryGetValue((model, run), out var current))
        {
            if (current != deployment)
            {
                _sticky[(model, run)] = deployment;
            }

            return;
        }

        if (Interlocked.Increment(ref _stickyCount) > MaxStickyRuns)
        {
            _sticky.Clear();
            Interlocked.Exchange(ref _stickyCount, 1);
        }

        _sticky[(model, run)] = deployment;
    }
}
