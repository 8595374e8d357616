using LlmGateway.Configuration;
using LlmGateway.Deployments;
using static LlmGateway.Tests.Deployments.DeploymentTestModels;

namespace LlmGateway.Tests.Deployments;

public sealed class DeploymentChooserTests
{
    private readonly FakeHealth _health = new();

    [Fact]
    public void Weighted_SplitsCallsByWeight()
    {
        var model = Model(null, null, new DeploymentOptions { Provider = "a", Weight = 3 }, new DeploymentOptions { Provider = "b", Weight = 1 });
        var chooser = new DeploymentChooser(new DeploymentRandom(new Random(19)));

        var onA = 0;
        for (var i = 0; i < 4000; i++)
        {
            if (Pick(chooser, model)!.Name == "a")
            {
                onA++;
            }
        }

        // Expected 3000, sd 27: ±150 is 5.5 sd (and the seed fixes the draw); weights ignored would give ~2000.
        Assert.InRange(onA, 2850, 3150);
    }

    [Fact]
    public void LeastBusy_PicksFewestInFlight_TiesToTheHeaviest()
    {
        var model = Model(DeploymentStrategies.LeastBusyName, null,
            new DeploymentOptions { Provider = "a", Weight = 1 }, new DeploymentOptions { Provider = "b", Weight = 3 }, new DeploymentOptions { Provider = "c", Weight = 2 });
        var chooser = new DeploymentChooser(new DeploymentRandom(new Random(1)));

        var picks = new List<string>();
        for (var i = 0; i < 6; i++)
        {
            var deployment = Pick(chooser, model)!;
            chooser.StateOf(deployment).Enter();
            picks.Add(deployment.Name);
        }

        Assert.Equal(["b", "c", "a", "b", "c", "a"], picks);
        chooser.StateOf(model.Deployments[0]).Exit();
        chooser.StateOf(model.Deployments[0]).Exit();
        Assert.Equal("a", Pick(chooser, model)!.Name);
    }

    [Fact]
    public void Pick_SkipsUnhealthyAndFailed_AndNamesTheSoonestWait()
    {
        var model = Model(null, null, new DeploymentOptions { Provider = "a" }, new DeploymentOptions { Provider = "b" }, new DeploymentOptions { Provider = "c" });
        var chooser = new DeploymentChooser(new DeploymentRandom(new Random(2)));
        _health.Down["a"] = TimeSpan.FromSeconds(20);
        _health.Down["b"] = TimeSpan.FromSeconds(5);

        for (var i = 0; i < 50; i++)
        {
            Assert.Equal("c", Pick(chooser, model)!.Name);
        }

        TimeSpan? soonest = null;
        Assert.Null(chooser.Pick(model, null, skip: 1UL << 2, _health, ref soonest));
        Assert.Equal(TimeSpan.FromSeconds(5), soonest);
    }

    [Fact]
    public void StickyRun_StaysOnItsDeployment_UntilItCannotTakeCalls_ThenMovesOnce()
    {
        var model = Model(null, DeploymentStrategies.StickyRun, new DeploymentOptions { Provider = "a" }, new DeploymentOptions { Provider = "b" });
        var chooser = new DeploymentChooser(new DeploymentRandom(new Random(3)));

        var first = Pick(chooser, model, "run-1")!.Name;
        for (var i = 0; i < 40; i++)
        {
            Assert.Equal(first, Pick(chooser, model, "run-1")!.Name);
        }

        _health.Down[first] = TimeSpan.FromSeconds(30);
        var second = Pick(chooser, model, "run-1")!.Name;
        Assert.NotEqual(first, second);
        _health.Down.Clear();
        for (var i = 0; i < 40; i++)
        {
            Assert.Equal(second, Pick(chooser, model, "run-1")!.Name);
        }

        // Without a run id the calls spread.
        var names = Enumerable.Range(0, 40).Select(_ => Pick(chooser, model)!.Name).ToHashSet();
        Assert.Equal(2, names.Count);
    }

    private DeploymentRoute? Pick(DeploymentChooser chooser, ModelRoute model, string? run = null)
    {
        TimeSpan? soonest = null;
        return chooser.Pick(model, run, 0, _health, ref soonest);
    }
}
