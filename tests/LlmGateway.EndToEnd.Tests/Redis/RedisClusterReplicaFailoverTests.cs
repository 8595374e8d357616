using System.Globalization;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;
using Xunit.Abstractions;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// Fail-over to a replica on a real cluster of three masters with replicas, the way managed clusters fail over: two
/// gateway replicas with <c>Store:WaitForReplicas: 1</c> under a bounded load, one master killed (kill -9, nothing
/// persisted: what its replicas did not receive is gone). The cluster promotes a replica by itself.
/// <list type="bullet">
/// <item>While the master is down, its users get 503 <c>store_unavailable</c>; the others are served.</item>
/// <item>One replica per master: once promoted, the new master has no replica to acknowledge its users' writes, so they
/// are still refused (the documented price of the setting; a gateway that took the promoted node's word alone would be
/// exposed to the next fail-over), until the killed node comes back empty and rejoins as its replica.</item>
/// <item>Two replicas per master (the configuration the README recommends with the setting): the other replica follows
/// the promoted node and acknowledges, so its users are served again without the killed node.</item>
/// <item>Either way no gateway restart, and no drift: every user's spend is exactly what the clients were told, although
/// the dead master's unreplicated writes were lost. Every write the gateway acted on had reached the node that took over.</item>
/// </list>
/// </summary>
/// <remarks>Per call and with leases, and with two replicas per master (a fresh cluster each: the test kills a node).</remarks>
[RequiresRedisServer]
public abstract class RedisClusterReplicaFailoverTests(RedisClusterFixture cluster, ITestOutputHelper output, bool leases) : IAsyncLifetime
{
    private GatewayPair _pair = null!;

    public async Task InitializeAsync()
    {
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";
        var store = """, "WaitForReplicas": 1""" + (leases ? """, "Leases": true""" : "");
        _pair = await GatewayPair.StartAsync(mock => ClusterFailoverLoad.Config(cluster, mock, prefix, store));
    }

    public async Task DisposeAsync() => await _pair.DisposeAsync();

    [RedisFact]
    public async Task MasterKilled_AReplicaIsPromoted_ItsUsersAreServedOnceItHasAReplica_AndNothingTheClientsWereToldIsLost()
    {
        var (victim, onVictim) = ClusterFailoverLoad.PickVictim(cluster);
        var replicas = ReplicasOf(victim);
        var load = new ClusterFailoverLoad(cluster, onVictim);
        ClusterFailoverLoad.AllowPartialCoverage(cluster);

        using var stop = new CancellationTokenSource();
        var workers = load.Start(_pair.A, _pair.B, stop.Token);
        await load.Until(() => load.Calls >= 60 && load.VictimServed >= 10, "calls before the kill, some on the victim's slots");

        cluster.StopNode(victim);
        load.Down = true;
        await load.Until(() => replicas.Any(IsMaster), "a replica of the victim promoted by the cluster");
        var promoted = replicas.First(IsMaster);
        Assert.True(load.VictimRefused > 0, "the victim's users were refused while it was down");
        if (cluster.ReplicasPerMaster == 1)
        {
            // Promoted, but alone: WAIT 1 cannot be met on its slots, so its users are refused and nothing they were
            // told is held by one node only. (Calls admitted before the kill have long finished: promotion takes
            // node-timeout, 2 s.)
            load.ResetVictimServed();
            var refused = load.VictimRefused;
            await load.Until(() => load.VictimRefused >= refused + 10 && load.OthersServedWhileDown >= 30, "503s on the promoted node's slots and answers on the others");
            Assert.Equal(0, load.VictimServed);

            cluster.RestartNode(victim);
            Assert.False(IsMaster(victim), "the killed node rejoined as the promoted node's replica");
        }

        load.ResetVictimServed();
        load.Down = false;
        await load.Until(() => load.VictimServed >= 10, "calls on the victim's users again, acknowledged by a replica of the promoted node");
        var before = load.Calls;
        await load.Until(() => load.Calls >= before + 60, "calls after the recovery");
        await stop.CancelAsync();
        await Task.WhenAll(workers);

        output.WriteLine(load.Summary(victim) + $"; node {promoted} (port {cluster.Ports[promoted]}) took over; {cluster.ReplicasPerMaster} replica(s) per master");
        Assert.Empty(load.Unexpected);
        await load.AssertNoDriftAsync(_pair.A);
    }

    private bool IsMaster(int index) => cluster.TryCommand(index, "INFO replication") is { } info && info.Contains("role:master", StringComparison.Ordinal);

    /// <summary>The nodes replicating master <paramref name="master"/>.</summary>
    private int[] ReplicasOf(int master)
    {
        var port = "master_port:" + cluster.Ports[master].ToString(CultureInfo.InvariantCulture);
        var replicas = Enumerable.Range(0, cluster.Ports.Length)
            .Where(i => cluster.TryCommand(i, "INFO replication") is { } info && info.Contains("role:slave", StringComparison.Ordinal) && info.Contains(port, StringComparison.Ordinal))
            .ToArray();
        Assert.Equal(cluster.ReplicasPerMaster, replicas.Length);
        return replicas;
    }
}

public sealed class RedisClusterReplicaFailoverPerCallTests(RedisClusterWithReplicasFixture cluster, ITestOutputHelper output)
    : RedisClusterReplicaFailoverTests(cluster, output, leases: false), IClassFixture<RedisClusterWithReplicasFixture>;

public sealed class RedisClusterReplicaFailoverLeasedTests(RedisClusterWithReplicasFixture cluster, ITestOutputHelper output)
    : RedisClusterReplicaFailoverTests(cluster, output, leases: true), IClassFixture<RedisClusterWithReplicasFixture>;

public sealed class RedisClusterTwoReplicasFailoverTests(RedisClusterWithTwoReplicasFixture cluster, ITestOutputHelper output)
    : RedisClusterReplicaFailoverTests(cluster, output, leases: false), IClassFixture<RedisClusterWithTwoReplicasFixture>;
