using LlmGateway.Budgets;
using LlmGateway.Budgets.Leases;
using LlmGateway.Redis;
using LlmGateway.Telemetry;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// A suite that pauses or kills a real Redis's clients on every primary (CLIENT PAUSE, CLIENT KILL): its subclasses say
/// where Redis is (one redis-server, or the 3-master cluster), and every test ends with Redis unpaused and the stores it
/// made disposed.
/// </summary>
public abstract class RedisPausingTests : IDisposable
{
    private readonly List<IDisposable> _stores = [];

    protected abstract string ConnectionString { get; }

    /// <summary>Sends a command to every primary; returns their first reply lines.</summary>
    protected abstract string?[] OnEveryNode(string command);

    public void Dispose()
    {
        OnEveryNode("CLIENT UNPAUSE");
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>
    /// A leased store over a per-call store on a connection of its own, as the gateway builds them, warmed up (scripts
    /// loaded, lease channel subscribed); disposed after the test unless <paramref name="track"/> is false (a test that
    /// disposes it itself).
    /// </summary>
    private protected async Task<(LeasedAdmissionStore Store, RedisAdmissionStore Inner)> NewLeasedStoreAsync(
        AdmissionStoreOptions options, TimeProvider time, ILogger? logger = null, GatewayMetrics? metrics = null, bool track = true)
    {
        var connection = new RedisConnection(ConnectionString, TimeSpan.FromSeconds(5));
        var inner = new RedisAdmissionStore(connection, options, time, ownsConnection: true);
        var store = new LeasedAdmissionStore(connection, inner, options, new LeaseOptions(), time, ownsInner: true, logger, metrics);
        if (track)
        {
            Track(store);
        }

        await store.WarmUpAsync().WaitAsync(TimeSpan.FromSeconds(30));
        return (store, inner);
    }

    /// <summary>A store the test made, disposed after it (once Redis is unpaused).</summary>
    protected T Track<T>(T store)
        where T : IDisposable
    {
        _stores.Add(store);
        return store;
    }
}
