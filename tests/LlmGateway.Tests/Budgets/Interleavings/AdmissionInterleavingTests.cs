using CsCheck;
using LlmGateway.Budgets;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace LlmGateway.Tests.Budgets.Interleavings;

/// <summary>
/// Property test (CsCheck): random interleavings of admissions, settlements (at nothing, part or all of the worst
/// case), releases, halts, resumes and limit changes on several simulated replicas never pass a limit, and spend ends
/// exactly at what was settled (see <see cref="InterleavingRun"/>). Run against every store; a failure prints the
/// scenario and CsCheck's seed (set <c>CsCheck_Seed</c> to replay it).
/// </summary>
public abstract class AdmissionInterleavingTests(ITestOutputHelper output) : IDisposable
{
    private static readonly DateTimeOffset Start = new(2026, 11, 21, 10, 0, 0, TimeSpan.Zero);

    protected ITestOutputHelper Output => output;

    /// <summary>Simulated replicas per scenario.</summary>
    protected virtual int Replicas => 3;

    /// <summary>Scenarios per run: a few seconds on Redis, under the suite's load.</summary>
    protected virtual int Iterations => 40;

    public virtual void Dispose() => GC.SuppressFinalize(this);

    /// <summary>One store object per replica, sharing what the replicas of that store would share.</summary>
    private protected abstract IAdmissionStore[] CreateReplicas(AdmissionStoreOptions options, TimeProvider time);

    [StoreFact]
    public Task ConcurrentReplicas_NeverPassALimit_AndSpendEndsAtWhatWasSettled() => SampleAsync(sequential: false);

    /// <summary>Runs each scenario with a fresh key prefix and clock; <paramref name="sequential"/> mirrors it on the in-memory store.</summary>
    private protected async Task SampleAsync(bool sequential)
    {
        var admitted = 0L;
        var scenarios = 0;
        await Scenario.Generate(Replicas).SampleAsync(
            async scenario =>
            {
                var options = new AdmissionStoreOptions
                {
                    KeyPrefix = "prop-" + Guid.NewGuid().ToString("N")[..12] + ":",
                    OperationTimeout = TimeSpan.FromSeconds(5),
                };
                var time = new FakeTimeProvider(Start);
                var stores = CreateReplicas(options, time);
                var run = new InterleavingRun(stores, time, scenario);
                await run.RunAsync(sequential ? new InMemoryAdmissionStore(options, time) : null);
                Interlocked.Add(ref admitted, run.Admitted);
                Interlocked.Increment(ref scenarios);
                if (run.Violations.Count > 0)
                {
                    throw new Xunit.Sdk.XunitException(string.Join('\n', run.Violations.Take(10)));
                }
            },
            writeLine: output.WriteLine,
            iter: Iterations,
            threads: 1,
            print: scenario => scenario.ToString());
        output.WriteLine($"{scenarios} scenarios, {admitted} calls admitted");

        // Worth something only if calls were admitted (and, with limits this tight, refused: the checks bind).
        Assert.True(admitted > scenarios, $"{admitted} calls admitted in {scenarios} scenarios");
    }
}

/// <summary>The property on the in-memory store: the replicas are threads of one process sharing one store.</summary>
public sealed class InMemoryAdmissionInterleavingTests(ITestOutputHelper output) : AdmissionInterleavingTests(output)
{
    protected override int Iterations => 150;

    private protected override IAdmissionStore[] CreateReplicas(AdmissionStoreOptions options, TimeProvider time)
    {
        var store = new InMemoryAdmissionStore(options, time);
        return Enumerable.Repeat<IAdmissionStore>(store, Replicas).ToArray();
    }
}

/// <summary>
/// On Redis every replica is a store on a connection of its own (as gateway processes are), all on one Redis; plus the
/// differential: the same scenarios one step at a time decide exactly as the in-memory store.
/// </summary>
public abstract class RedisAdmissionInterleavingTests(ITestOutputHelper output) : AdmissionInterleavingTests(output)
{
    private RedisConnection[]? _connections;
    private bool _loaded;

    protected abstract string ConnectionString { get; }

    public override void Dispose()
    {
        foreach (var connection in _connections ?? [])
        {
            connection.Dispose();
        }

        base.Dispose();
    }

    [StoreFact]
    public Task OneStepAtATime_DecidesAsTheInMemoryStore() => SampleAsync(sequential: true);

    private protected override IAdmissionStore[] CreateReplicas(AdmissionStoreOptions options, TimeProvider time)
    {
        _connections ??= Enumerable.Range(0, Replicas).Select(_ => new RedisConnection(ConnectionString, TimeSpan.FromSeconds(5))).ToArray();
        var stores = _connections.Select(connection => new RedisAdmissionStore(connection, options, time)).ToArray();
        if (!_loaded)
        {
            // As the gateway's warm-up does: connected to every node, the scripts loaded.
            foreach (var store in stores)
            {
                store.LoadScriptsAsync().WaitAsync(TimeSpan.FromSeconds(30)).GetAwaiter().GetResult();
            }

            _loaded = true;
        }

        return stores;
    }
}

[RequiresRedisServer]
public sealed class RedisSingleAdmissionInterleavingTests(RedisServerFixture redis, ITestOutputHelper output)
    : RedisAdmissionInterleavingTests(output), IClassFixture<RedisServerFixture>
{
    protected override string ConnectionString => redis.ConnectionString;
}

/// <summary>On the 3-master cluster: each scope decided on its own node, refused calls' holds given back.</summary>
[RequiresRedisServer]
public sealed class RedisClusterAdmissionInterleavingTests(RedisClusterFixture cluster, ITestOutputHelper output)
    : RedisAdmissionInterleavingTests(output), IClassFixture<RedisClusterFixture>
{
    protected override string ConnectionString => cluster.ConnectionString;
}
