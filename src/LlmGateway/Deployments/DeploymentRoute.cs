using LlmGateway.Configuration;

namespace LlmGateway.Deployments;

/// <summary>
/// One deployment of a model as the request path needs it: its provider (key, URL, bulkhead), the model name sent
/// there, its weight, its own Rpm/Tpm and prices. A model with <c>Provider</c> alone has one, named after the provider.
/// </summary>
/// <remarks>
/// Identity: (model, deployment name). The circuit breaker is per deployment (<see cref="Upstream"/>): two deployments
/// on one provider fail apart (another upstream model, another region behind one URL). The bulkhead stays per
/// provider: a provider entry is one key and endpoint, and its MaxConcurrency is that key's quota, shared by every
/// deployment on it. Rpm/Tpm windows are per deployment (its Rpm/Tpm are the quota of that key for that model).
/// </remarks>
internal sealed class DeploymentRoute
{
    /// <summary>Most deployments of one model (a call's tried set is a 64-bit mask; the metrics' label values stay few).</summary>
    public const int MaxPerModel = 16;

    public DeploymentRoute(string model, int index, string name, ProviderRoute provider, string upstreamModel, double weight, int rpm, int tpm, ModelPrices prices)
    {
        Model = model;
        Index = index;
        Name = name;
        Provider = provider;
        UpstreamModel = upstreamModel;
        Weight = weight;
        Rpm = rpm;
        Tpm = tpm;
        Prices = prices;

        // A deployment named after its provider keeps the circuit key (and llm_gateway_circuit_state label) of the
        // single-provider model: "provider/model".
        Upstream = name == provider.Name ? provider.Name + "/" + model : provider.Name + "/" + model + "@" + name;
        Key = model + ":" + name;
    }

    public string Model { get; }

    /// <summary>Its place in the model's list: the bit of a call's tried set.</summary>
    public int Index { get; }

    /// <summary>X-Gateway-Deployment and the <c>deployment</c> label.</summary>
    public string Name { get; }

    public ProviderRoute Provider { get; }

    public string UpstreamModel { get; }

    public double Weight { get; }

    public int Rpm { get; }

    public int Tpm { get; }

    public bool HasRateLimits => Rpm > 0 || Tpm > 0;

    public ModelPrices Prices { get; }

    /// <summary>The key of this deployment's circuit breaker (and of its retry log lines).</summary>
    public string Upstream { get; }

    /// <summary>"model:deployment": the key of its in-flight count, rate window and metrics series.</summary>
    public string Key { get; }

    /// <summary>Its live counters, found once per config (a reload builds new routes over the same state).</summary>
    internal DeploymentState? State { get; set; }
}

/// <summary>How a call picks among a model's deployments.</summary>
internal enum DeploymentStrategy
{
    /// <summary>At random, in proportion to Weight.</summary>
    Weighted,

    /// <summary>Fewest calls in flight on this replica; ties by Weight.</summary>
    LeastBusy,
}

/// <summary>The config names of <see cref="DeploymentStrategy"/> and of Sticky.</summary>
internal static class DeploymentStrategies
{
    public const string WeightedName = "weighted";
    public const string LeastBusyName = "least-busy";
    public const string StickyRun = "run";

    public static bool TryParse(string? name, out DeploymentStrategy strategy)
    {
        strategy = DeploymentStrategy.Weighted;
        if (name is null || string.Equals(name, WeightedName, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        strategy = DeploymentStrategy.LeastBusy;
        return string.Equals(name, LeastBusyName, StringComparison.OrdinalIgnoreCase);
    }
}

/// <summary>A deployment's live counters on this replica; kept across config reloads.</summary>
internal sealed class DeploymentState(string model, string name)
{
    private int _inFlight;

    public string Model { get; } = model;

    public string Name { get; } = name;

    public int InFlight => Volatile.Read(ref _inFlight);

    public void Enter() => Interlocked.Increment(ref _inFlight);

    public void Exit() => Interlocked.Decrement(ref _inFlight);
}
