using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Runs;

/// <summary>
/// A run nobody reports ends by idling out (Gateway:Runs:IdleExpiry, 2 s here) with outcome <c>unknown</c>, observed by
/// one of two replicas on one real redis-server, whichever sweep claims it first.
/// </summary>
[RequiresRedisServer]
public sealed class RunIdleExpiryTests(RedisServerFixture redis) : RunReplicasTestBase(redis, "00:00:02"), IClassFixture<RedisServerFixture>
{
    [RedisFact]
    public async Task UnreportedRun_IdlesOut_ObservedUnknownOnce_AcrossReplicas()
    {
        using (var first = await A.Client.SendAsync(RunConfigs.Llm("run-idle", "one")))
        using (var second = await B.Client.SendAsync(RunConfigs.Llm("run-idle", "two")))
        {
            Assert.Equal(HttpStatusCode.OK, first.StatusCode);
            Assert.Equal(HttpStatusCode.OK, second.StatusCode);
        }

        async Task<double> UnknownAsync(string label) =>
            RunConfigs.Sum(await A.Client.GetStringAsync("/metrics"), "llm_gateway_run_outcomes_total", label)
            + RunConfigs.Sum(await B.Client.GetStringAsync("/metrics"), "llm_gateway_run_outcomes_total", label);

        await Http.EventuallyAsync(async () => await UnknownAsync("outcome=\"unknown\"") >= 1 ? (bool?)true : null, "the idle run observed as unknown", timeoutMs: 30000);

        // Both replicas sweep every second: three more sweeps each, and the run is still observed once.
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Equal(1, await UnknownAsync("outcome=\"unknown\""));
        Assert.Equal(1, await UnknownAsync("team=\"research\""));

        // Gone for its caller and for the admin API.
        using var late = await B.Client.SendAsync(RunConfigs.Outcome("run-idle", """{"outcome":"success"}"""));
        await Http.AssertErrorAsync(late, 404, "run_not_found", shouldRetry: false);
        using var calls = await A.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/runs/run-idle/calls"));
        Assert.Equal(HttpStatusCode.NotFound, calls.StatusCode);
    }
}
