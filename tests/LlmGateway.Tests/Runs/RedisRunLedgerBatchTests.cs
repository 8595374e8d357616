using LlmGateway.Redis;
using LlmGateway.Runs;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace LlmGateway.Tests.Runs;

/// <summary>
/// The Redis run ledger's batching (<see cref="RunLedgerWriter"/>) on a real redis-server: a flush sends one script per
/// run and one ZADD; reads on the same replica see every call it queued; stop writes the queue; a full queue drops and
/// counts; the expiry still holds although it is not refreshed on every batch. The writers here never flush on a
/// timer (infinite period), so what a test sees is the effect of reads, sweeps and stops, not of timing.
/// </summary>
public sealed class RedisRunLedgerBatchTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IDisposable
{
    private static readonly TimeSpan Idle = TimeSpan.FromMinutes(30);

    private readonly FakeLogger<RedisRunLedger> _logger = new();
    private readonly string _prefix = "batch-" + Guid.NewGuid().ToString("N")[..12] + ":";
    private readonly List<IDisposable> _owned = [];
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 10, 0, 0, TimeSpan.Zero));

    public void Dispose()
    {
        foreach (var owned in Enumerable.Reverse(_owned))
        {
            owned.Dispose();
        }
    }

    [RedisFact]
    public async Task CallsOfOneRun_InOneFlush_AreOneScriptAndOneZadd()
    {
        var ledger = NewLedger();
        Record(ledger, "run-warm", 1);
        Assert.NotNull(await ledger.GetCallsAsync("run-warm", default)); // the script is loaded, the connection up
        using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString + ",allowAdmin=true");
        var server = admin.GetServer(redis.ConnectionString);
        await server.ConfigResetStatisticsAsync();
        var batches = ledger.Writer.Batches;

        for (var step = 1; step <= 50; step++)
        {
            Record(ledger, "run-batch", step, cost: 0.01m);
        }

        var calls = await ledger.GetCallsAsync("run-batch", default);

        Assert.Equal(50, calls!.Count);
        Assert.Equal(batches + 1, ledger.Writer.Batches);
        var stats = await CommandStatsAsync(server);
        Assert.Equal(1, stats.GetValueOrDefault("evalsha") + stats.GetValueOrDefault("eval"));
        Assert.Equal(1, stats.GetValueOrDefault("zadd"));
        Assert.Equal(1, stats.GetValueOrDefault("rpush"));
        Assert.Equal(2, stats.GetValueOrDefault("pexpire")); // a new run: its two keys get their expiry

        // The run's next batch (within the refresh period): one script again, and no expiry command.
        await server.ConfigResetStatisticsAsync();
        for (var step = 51; step <= 100; step++)
        {
            Record(ledger, "run-batch", step, cost: 0.01m);
        }

        Assert.Equal(100, (await ledger.GetCallsAsync("run-batch", default))!.Count);
        stats = await CommandStatsAsync(server);
        Assert.Equal(1, stats.GetValueOrDefault("evalsha"));
        Assert.Equal(1, stats.GetValueOrDefault("zadd"));
        Assert.Equal(0, stats.GetValueOrDefault("pexpire"));
        var ended = await ledger.EndAsync("run-batch", "alice", RunConstants.Success, default);
        Assert.Equal(100, ended.Summary!.LlmCalls);
        Assert.Equal(1m, ended.Summary.CostUsd);
    }

    [RedisFact]
    public async Task ReadsOnTheSameReplica_SeeItsQueuedCalls_OtherReplicasAfterTheFlush()
    {
        var ledger = NewLedger();
        var other = NewLedger();
        Record(ledger, "run-ryw", 1);
        Record(ledger, "run-ryw", 2, RunConstants.KindTool);

        Assert.Null(await other.GetCallsAsync("run-ryw", default)); // still queued on the first replica
        Assert.Equal([1L, 2L], (await ledger.GetCallsAsync("run-ryw", default))!.Select(c => c.Step!.Value));
        Assert.Equal(2, (await other.GetCallsAsync("run-ryw", default))!.Count);

        // The outcome report flushes too: a call queued just before it is in the run's totals.
        Record(ledger, "run-ryw", 3, cost: 0.25m);
        var ended = await ledger.EndAsync("run-ryw", "alice", RunConstants.Success, default);
        Assert.Equal(RunEndStatus.Ended, ended.Status);
        Assert.Equal((2L, 1L, 0.25m), (ended.Summary!.LlmCalls, ended.Summary.ToolCalls, ended.Summary.CostUsd));
    }

    [RedisFact]
    public async Task IdleSweep_WritesTheQueueFirst_SoAQueuedCallKeepsItsRunActive()
    {
        var ledger = NewLedger();
        Record(ledger, "run-sweep", 1);
        Assert.NotNull(await ledger.GetCallsAsync("run-sweep", default));
        _time.Advance(Idle - TimeSpan.FromSeconds(1));
        Record(ledger, "run-sweep", 2);
        _time.Advance(TimeSpan.FromSeconds(1));

        // Idle by its first call only: the queued second call must reach Redis before the sweep looks.
        Assert.Empty(await ledger.EndIdleAsync(default));
        _time.Advance(Idle);
        var run = Assert.Single(await ledger.EndIdleAsync(default));
        Assert.Equal(2, run.LlmCalls);
    }

    [RedisFact]
    public async Task Stop_WritesTheQueuedCalls()
    {
        var ledger = NewLedger(own: false);
        var stop = new RunLedgerStopFlush(ledger);
        Record(ledger, "run-stop", 1);
        await stop.StopAsync(default);
        Record(ledger, "run-stop", 2);
        Record(ledger, "run-disposed", 1);
        ledger.Dispose();

        var other = NewLedger();
        Assert.Equal([1L, 2L], (await other.GetCallsAsync("run-stop", default))!.Select(c => c.Step!.Value));
        Assert.Single((await other.GetCallsAsync("run-disposed", default))!);
    }

    [RedisFact]
    public async Task FullQueue_DropsCountsAndLogs_NeverWaits()
    {
        long counted = 0;
        var ledger = NewLedger(capacity: 5, onDropped: n => Interlocked.Add(ref counted, n));
        for (var step = 1; step <= 8; step++)
        {
            Record(ledger, "run-full", step);
        }

        Assert.Equal(5, ledger.Writer.Pending);
        Assert.Equal(3, ledger.Writer.Dropped);
        Assert.Equal(3, counted);
        Assert.Equal(5, (await ledger.GetCallsAsync("run-full", default))!.Count);
        await ledger.FlushAsync(default);
        Assert.Contains(_logger.Collector.GetSnapshot(), r => r.Id.Name == "RunRecordsDropped" && r.Message.StartsWith("3 calls", StringComparison.Ordinal));

        // Room again once flushed.
        Record(ledger, "run-full", 9);
        Assert.Equal(6, (await ledger.GetCallsAsync("run-full", default))!.Count);
    }

    [RedisFact]
    public async Task Expiry_IsRefreshedOncePerQuarterIdle_AndSetOnANewList()
    {
        var ledger = NewLedger();
        using var admin = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var db = admin.GetDatabase();
        RedisKey log = _prefix + "{r:run-ttl}:log", calls = _prefix + "{r:run-ttl}:calls";
        Record(ledger, "run-ttl", 1);
        await ledger.GetCallsAsync("run-ttl", default);
        var first = (await db.KeyTimeToLiveAsync(calls))!.Value;
        Assert.InRange(first, Idle, Idle + TimeSpan.FromMinutes(2)); // idle + 2 x refresh (a quarter of idle, at most 1 min)
        Assert.True((await db.KeyTimeToLiveAsync(log))!.Value > (2 * Idle));

        // Within the refresh period the expiry is left alone (marked here by a short one) ...
        await db.KeyExpireAsync(calls, TimeSpan.FromHours(1));
        await db.KeyExpireAsync(log, TimeSpan.FromHours(3));
        _time.Advance(TimeSpan.FromSeconds(59));
        Record(ledger, "run-ttl", 2);
        await ledger.GetCallsAsync("run-ttl", default);
        Assert.True((await db.KeyTimeToLiveAsync(calls))!.Value > TimeSpan.FromMinutes(59));
        Assert.True((await db.KeyTimeToLiveAsync(log))!.Value > TimeSpan.FromMinutes(179));

        // ... and refreshed once the batch is a minute past the last refresh.
        _time.Advance(TimeSpan.FromSeconds(1));
        Record(ledger, "run-ttl", 3);
        await ledger.GetCallsAsync("run-ttl", default);
        Assert.InRange((await db.KeyTimeToLiveAsync(calls))!.Value, Idle, Idle + TimeSpan.FromMinutes(2));
        Assert.InRange((await db.KeyTimeToLiveAsync(log))!.Value, 2 * Idle, (2 * Idle) + TimeSpan.FromMinutes(1));

        // A calls list gone on its own (its run's log still there) is created again with an expiry, not forever.
        await db.KeyDeleteAsync(calls);
        _time.Advance(TimeSpan.FromSeconds(1));
        Record(ledger, "run-ttl", 4);
        await ledger.GetCallsAsync("run-ttl", default);
        Assert.InRange((await db.KeyTimeToLiveAsync(calls))!.Value, Idle, Idle + TimeSpan.FromMinutes(2));
    }

    private static async Task<Dictionary<string, long>> CommandStatsAsync(IServer server)
    {
        var stats = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var group in await server.InfoAsync("commandstats"))
        {
            foreach (var (key, value) in group)
            {
                // cmdstat_evalsha: calls=1,usec=...
                var calls = value.Split(',')[0].Split('=')[1];
                stats[key["cmdstat_".Length..]] = long.Parse(calls, System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        return stats;
    }

    private RedisRunLedger NewLedger(int capacity = RunLedgerWriter.DefaultCapacity, Action<long>? onDropped = null, bool own = true)
    {
        var connection = new RedisConnection(redis.ConnectionString, TimeSpan.FromSeconds(2));
        _owned.Add(connection);
        var ledger = new RedisRunLedger(connection, _prefix, Idle, TimeSpan.FromSeconds(2), _time, _logger, Timeout.InfiniteTimeSpan, capacity, onDropped);
        if (own)
        {
            _owned.Add(ledger);
        }

        return ledger;
    }

    private void Record(IRunLedger ledger, string runId, long step, string kind = RunConstants.KindLlm, decimal cost = 0) =>
        ledger.Record(runId, "alice", "research", new RunCallEntry
        {
            Step = step,
            Kind = kind,
            RequestId = "req-" + step,
            Time = _time.GetUtcNow(),
            User = "alice",
            Status = 200,
            CostUsd = kind == RunConstants.KindLlm ? cost : null,
        });
}
