using LlmGateway.Redis;
using LlmGateway.Runs;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Logging.Testing;

namespace LlmGateway.Tests.Runs;

/// <summary>
/// The ledger contract on a real 3-master Redis Cluster (each run's keys in its own slot, <c>runs:active</c> in one),
/// and a flush that carries runs of every node: one batch, each run's script on its node, one ZADD.
/// </summary>
[RequiresRedisServer]
public sealed class RedisClusterRunLedgerTests(RedisClusterFixture cluster) : RunLedgerContractTests, IClassFixture<RedisClusterFixture>
{
    private readonly FakeLogger<RedisRunLedger> _logger = new();
    private readonly string _prefix = "cluster-" + Guid.NewGuid().ToString("N")[..12] + ":";

    protected override string Diagnostics => string.Join("\n", _logger.Collector.GetSnapshot().Select(r => r.Message));

    [RedisFact]
    public async Task OneFlush_OfRunsOnEveryNode_IsOneBatch_SeenByAnotherReplica()
    {
        var ledger = Owned(NewRedisLedger(Timeout.InfiniteTimeSpan));
        var runs = Enumerable.Range(1, 12).Select(i => "run-slot-" + i).ToArray();
        // redis-cli --cluster create gives the three masters slots 0-5460, 5461-10922 and 10923-16383.
        var nodes = runs.Select(r => Slot(_prefix + "{r:" + r + "}:log") switch { <= 5460 => 0, <= 10922 => 1, _ => 2 }).Distinct().Count();
        Assert.Equal(3, nodes);
        foreach (var run in runs)
        {
            for (var step = 1; step <= 3; step++)
            {
                ledger.Record(run, "alice", "research", new RunCallEntry { Step = step, Kind = RunConstants.KindLlm, RequestId = run + "-" + step, Time = Time.GetUtcNow(), User = "alice", Status = 200, CostUsd = 0.1m });
            }
        }

        var batches = ledger.Writer.Batches;
        await ledger.FlushAsync(default);

        Assert.Equal(batches + 1, ledger.Writer.Batches);
        Assert.Equal(0, ledger.Writer.Pending);
        var other = Owned(NewRedisLedger(Timeout.InfiniteTimeSpan));
        foreach (var run in runs)
        {
            Assert.Equal(3, (await other.GetCallsAsync(run, default))?.Count);
        }

        // runs:active got every run of the batch: another replica's sweep ends them all once they idle out.
        Time.Advance(Idle);
        var ended = await other.EndIdleAsync(default);
        Assert.Equal(runs.Order(StringComparer.Ordinal), ended.Select(r => r.RunId).Order(StringComparer.Ordinal));
        Assert.All(ended, r => Assert.Equal((3L, 0.3m), (r.LlmCalls, r.CostUsd)));
        Assert.DoesNotContain(_logger.Collector.GetSnapshot(), r => r.Id.Name == "RunRecordFailed");
    }

    internal override IRunLedger CreateLedger() => NewRedisLedger(null);

    private RedisRunLedger Owned(RedisRunLedger ledger)
    {
        Own(ledger);
        return ledger;
    }

    private int Slot(string key) => int.Parse(cluster.TryCommand(0, "CLUSTER KEYSLOT " + key)!.Trim().TrimStart(':'), System.Globalization.CultureInfo.InvariantCulture);

    private RedisRunLedger NewRedisLedger(TimeSpan? flushPeriod)
    {
        var connection = new RedisConnection(cluster.ConnectionString, TimeSpan.FromSeconds(2));
        Own(connection);
        return new RedisRunLedger(connection, _prefix, Idle, TimeSpan.FromSeconds(2), Time, _logger, flushPeriod);
    }
}
