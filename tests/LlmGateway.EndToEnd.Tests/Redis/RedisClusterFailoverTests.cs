using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using Xunit.Abstractions;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// Fail-over on a real 3-master cluster (a cluster of its own: this test kills a node): during a bounded load from two
/// gateway replicas, one master is killed (kill -9). Calls of users whose slot it owns follow OnUnavailable (503
/// <c>store_unavailable</c> under Deny), the others go on; the master comes back (its AOF, fsynced on every write, holds
/// what it had), the replicas reconnect by themselves, and the spend recorded for every user equals the sum of the
/// costs the clients were told, settlements that failed while it was away included (retried, charged once).
/// </summary>
/// <remarks>
/// The surviving masters are set <c>cluster-require-full-coverage no</c>, so that a master's failure takes only its own
/// slots down (with the default, the whole cluster refuses every key while any slot is uncovered). The cluster has no
/// replicas: a promoted replica could lack the last writes the dead master acknowledged (Redis replicates
/// asynchronously), which this test could not tell from drift. <see cref="RedisClusterReplicaFailoverTests"/> is the
/// fail-over to a replica, with <c>Store:WaitForReplicas</c>.
/// </remarks>
[RequiresRedisServer]
public sealed class RedisClusterFailoverTests(RedisClusterFixture cluster, ITestOutputHelper output) : IClassFixture<RedisClusterFixture>, IAsyncLifetime
{
    private GatewayPair _pair = null!;

    public async Task InitializeAsync()
    {
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";
        _pair = await GatewayPair.StartAsync(mock => ClusterFailoverLoad.Config(cluster, mock, prefix));
    }

    public async Task DisposeAsync() => await _pair.DisposeAsync();

    [RedisFact]
    public async Task MasterKilledUnderLoad_ItsSlotsFollowOnUnavailable_OthersGoOn_AndEverythingRecoversWithoutDrift()
    {
        var (victim, onVictim) = ClusterFailoverLoad.PickVictim(cluster);
        var load = new ClusterFailoverLoad(cluster, onVictim);
        ClusterFailoverLoad.AllowPartialCoverage(cluster);

        // The victim keeps what it writes across the kill: an AOF, fsynced on every write.
        Assert.StartsWith("+OK", cluster.TryCommand(victim, "CONFIG SET appendfsync always"), StringComparison.Ordinal);
        Assert.StartsWith("+OK", cluster.TryCommand(victim, "CONFIG SET appendonly yes"), StringComparison.Ordinal);
        await load.Until(() => cluster.TryCommand(victim, "INFO persistence") is { } info && info.Contains("aof_rewrite_in_progress:0", StringComparison.Ordinal)
            && info.Contains("aof_enabled:1", StringComparison.Ordinal) && !info.Contains("aof_rewrite_scheduled:1", StringComparison.Ordinal), "the AOF");

        using var stop = new CancellationTokenSource();
        var workers = load.Start(_pair.A, _pair.B, stop.Token);
        await load.Until(() => load.Calls >= 60, "calls before the kill");

        cluster.StopNode(victim);
        load.Down = true;
        await load.Until(() => load.VictimRefused >= 5 && load.OthersServedWhileDown >= 30, "503s on the dead master's slots and answers on the others");

        cluster.RestartNode(victim, "--appendonly", "yes", "--appendfsync", "always");
        load.Down = false;
        load.ResetVictimServed();
        await load.Until(() => load.VictimServed >= 10, "calls on the returned master's slots");
        var before = load.Calls;
        await load.Until(() => load.Calls >= before + 60, "calls after the recovery");
        await stop.CancelAsync();
        await Task.WhenAll(workers);

        output.WriteLine(load.Summary(victim));
        Assert.Empty(load.Unexpected);
        await load.AssertNoDriftAsync(_pair.A);
    }
}
