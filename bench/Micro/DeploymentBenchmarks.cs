using BenchmarkDotNet.Attributes;
using LlmGateway.Configuration;
using LlmGateway.Deployments;

namespace LlmGateway.Benchmarks;

/// <summary>
/// The choice of a deployment per call (issue #19): a model on 4 deployments under each strategy, and the in-memory
/// Rpm window a deployment with its own Rpm adds. A model with Provider alone skips the choice (one deployment).
/// </summary>
[MemoryDiagnoser]
public class DeploymentBenchmarks
{
    private readonly DeploymentChooser _chooser = new(new DeploymentRandom());
    private readonly Healthy _health = new();
    private ModelRoute _weighted = null!;
    private ModelRoute _leastBusy = null!;
    private ModelRoute _sticky = null!;
    private DeploymentRoute _limited = null!;
    private InMemoryDeploymentRateStore _rates = null!;

    [GlobalSetup]
    public void Setup()
    {
        var providers = new Dictionary<string, ProviderOptions>(StringComparer.Ordinal);
        var deployments = new List<DeploymentOptions>();
        for (var i = 0; i < 4; i++)
        {
            providers[$"p{i}"] = new ProviderOptions { BaseUrl = "http://127.0.0.1:9/v1" };
            deployments.Add(new DeploymentOptions { Provider = $"p{i}", Weight = i + 1 });
        }

        var options = new GatewayOptions
        {
            Providers = providers,
            Models =
            {
                ["weighted"] = new ModelOptions { InputUsdPerMTok = 1, OutputUsdPerMTok = 1, Deployments = deployments },
                ["least-busy"] = new ModelOptions { InputUsdPerMTok = 1, OutputUsdPerMTok = 1, Deployments = deployments, Strategy = "least-busy" },
                ["sticky"] = new ModelOptions { InputUsdPerMTok = 1, OutputUsdPerMTok = 1, Deployments = deployments, Sticky = "run" },
                ["limited"] = new ModelOptions { InputUsdPerMTok = 1, OutputUsdPerMTok = 1, Deployments = [new DeploymentOptions { Provider = "p0", Rpm = int.MaxValue, Tpm = int.MaxValue }] },
            },
        };
        var config = new GatewayConfig(options, "bench");
        _weighted = config.Models["weighted"];
        _leastBusy = config.Models["least-busy"];
        _sticky = config.Models["sticky"];
        _limited = config.Models["limited"].Deployments[0];
        _rates = new InMemoryDeploymentRateStore(TimeProvider.System);
    }

    [Benchmark]
    public int Weighted()
    {
        TimeSpan? soonest = null;
        return _chooser.Pick(_weighted, null, 0, _health, ref soonest)!.Index;
    }

    [Benchmark]
    public int LeastBusy()
    {
        TimeSpan? soonest = null;
        return _chooser.Pick(_leastBusy, null, 0, _health, ref soonest)!.Index;
    }

    [Benchmark]
    public int StickyRun()
    {
        TimeSpan? soonest = null;
        return _chooser.Pick(_sticky, "bench-run-1", 0, _health, ref soonest)!.Index;
    }

    [Benchmark]
    public bool RpmWindowTake() => _rates.TryTakeAsync(_limited, 100, default).Result.Taken;

    private sealed class Healthy : IDeploymentHealth
    {
        public bool CanTake(DeploymentRoute deployment, out TimeSpan? retryAfter)
        {
            retryAfter = null;
            return true;
        }
    }
}
