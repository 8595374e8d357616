using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Replay;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Time.Testing;
using StackExchange.Redis;

namespace LlmGateway.Tests.Replay;

/// <summary>What every <see cref="IRecordingStore"/> keeps and refuses, run once per store by the subclasses.</summary>
public abstract class RecordingStoreContractTests : IDisposable
{
    protected static readonly TimeSpan Ttl = TimeSpan.FromHours(1);

    protected FakeTimeProvider Clock { get; } = new(new DateTimeOffset(2026, 12, 1, 0, 0, 0, TimeSpan.Zero));

    protected CacheOptions Options { get; set; } = new() { RecordingMaxRuns = 3, RecordingMaxRunBytes = 1000 };

    protected string Prefix { get; } = "rec-test-" + Guid.NewGuid().ToString("N")[..12] + ":";

    public virtual void Dispose() => GC.SuppressFinalize(this);

    protected abstract IRecordingStore Store { get; }

    protected static byte[] Step(int bytes, byte fill = (byte)'x') => Enumerable.Repeat(fill, bytes).ToArray();

    [StoreFact]
    public async Task Append_NumbersStepsInOrder()
    {
        Assert.Equal(1, await Store.AppendAsync("run", Step(10, (byte)'a'), Ttl));
        Assert.Equal(2, await Store.AppendAsync("run", Step(20, (byte)'b'), Ttl));

        Assert.Equal(Step(20, (byte)'b'), await Store.GetStepAsync("run", 2));
        Assert.Null(await Store.GetStepAsync("run", 3));
        Assert.Equal([Step(10, (byte)'a'), Step(20, (byte)'b')], await Store.GetAsync("run"));
        var info = Assert.Single(await Store.ListAsync());
        Assert.Equal(("run", 2, 30L), (info.RunId, info.Steps, info.Bytes));
    }

    [StoreFact]
    public async Task StepPastTheRunsBytes_IsRefused_AndSoIsEveryLaterStep()
    {
        Assert.Equal(1, await Store.AppendAsync("run", Step(600), Ttl));
        Assert.Equal(2, await Store.AppendAsync("run", Step(400), Ttl)); // exactly RecordingMaxRunBytes

        Assert.Equal(0, await Store.AppendAsync("run", Step(1), Ttl));
        Options = Options with { RecordingMaxRunBytes = 10_000 };
        Assert.Equal(0, await Store.AppendAsync("run", Step(1), Ttl)); // still a prefix of the run: no gap

        Assert.Equal(2, (await Store.GetAsync("run"))!.Count);
        Assert.Equal(1, await Store.AppendAsync("other", Step(1), Ttl));
    }

    [StoreFact]
    public async Task FirstStepTooLarge_NothingIsListed_AndTheRunStaysRefused()
    {
        Assert.Equal(0, await Store.AppendAsync("run", Step(1001), Ttl));
        Assert.Equal(0, await Store.AppendAsync("run", Step(1), Ttl));

        Assert.Null(await Store.GetAsync("run"));
        Assert.Empty(await Store.ListAsync());
    }

    [StoreFact]
    public async Task MoreRunsThanRecordingMaxRuns_TheLeastRecentlyRecordedGoFirst()
    {
        foreach (var run in new[] { "a", "b", "c" })
        {
            await Store.AppendAsync(run, Step(10), Ttl);
            Clock.Advance(TimeSpan.FromSeconds(1));
        }

        await Store.AppendAsync("a", Step(10), Ttl); // a is now the most recently recorded
        Clock.Advance(TimeSpan.FromSeconds(1));
        await Store.AppendAsync("d", Step(10), Ttl);

        Assert.Equal(["a", "c", "d"], (await Store.ListAsync()).Select(r => r.RunId));
        Assert.Null(await Store.GetAsync("b"));
        Assert.Equal(2, (await Store.GetAsync("a"))!.Count);
    }

    [StoreFact]
    public async Task ReplayCursor_AdvancesOnAKeptRecording_AndIsNeverKeptForAnother()
    {
        await Store.AppendAsync("rec", Step(10), Ttl);

        var steps = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            steps.Add(await Store.NextReplayStepAsync("rec", "r1", Ttl));
        }

        steps.Add(await Store.NextReplayStepAsync("rec", "r2", Ttl));
        steps.Add(await Store.NextReplayStepAsync("missing", "r1", Ttl));
        steps.Add(await Store.NextReplayStepAsync("missing", "r1", Ttl));

        Assert.Equal([1, 2, 3, 1, 1, 1], steps);
    }

    [StoreFact]
    public async Task Delete_ForgetsTheRecording_AndItsRefusal()
    {
        await Store.AppendAsync("run", Step(1000), Ttl);
        Assert.Equal(0, await Store.AppendAsync("run", Step(1), Ttl));

        Assert.True(await Store.DeleteAsync("run"));

        Assert.False(await Store.DeleteAsync("run"));
        Assert.Null(await Store.GetAsync("run"));
        Assert.Equal(1, await Store.AppendAsync("run", Step(1), Ttl));
    }
}

public sealed class InMemoryRecordingStoreTests : RecordingStoreContractTests
{
    private InMemoryRecordingStore? _store;

    protected override IRecordingStore Store => Memory;

    private InMemoryRecordingStore Memory => _store ??= new InMemoryRecordingStore(() => Options, Clock);

    private static long Cost(string runId, params int[] steps) =>
        InMemoryRecordingStore.RunOverhead + (2L * runId.Length) + steps.Sum(s => (long)s + InMemoryRecordingStore.StepOverhead);

    [Fact]
    public async Task ExpiredRuns_AreSwept_TheirBytesGivenBack()
    {
        await Memory.AppendAsync("a", Step(100), TimeSpan.FromMinutes(10));
        await Memory.AppendAsync("b", Step(50), TimeSpan.FromMinutes(20));
        Assert.Equal((Cost("a", 100) + Cost("b", 50), 2), Memory.Size());

        Clock.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal((Cost("b", 50), 1), Memory.Size());
        Assert.Null(await Memory.GetAsync("a"));

        Clock.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal((0L, 0), Memory.Size());
        Assert.Empty(await Memory.ListAsync());
    }

    [Fact]
    public async Task AStepExtendsItsRunsLife()
    {
        await Memory.AppendAsync("a", Step(10), TimeSpan.FromMinutes(10));
        Clock.Advance(TimeSpan.FromMinutes(9));
        await Memory.AppendAsync("a", Step(10), TimeSpan.FromMinutes(10));
        Clock.Advance(TimeSpan.FromMinutes(9));

        Assert.Equal(2, (await Memory.GetAsync("a"))!.Count);
    }

    [Fact]
    public async Task OverRecordingMaxBytes_EvictsTheOldestFirst_AndNeverHoldsMore()
    {
        Options = new CacheOptions { RecordingMaxBytes = Cost("a", 300) + Cost("b", 300) + Cost("c", 100), RecordingMaxRunBytes = 10_000, RecordingMaxRuns = 100 };
        await Memory.AppendAsync("a", Step(300), Ttl);
        Clock.Advance(TimeSpan.FromSeconds(1));
        await Memory.AppendAsync("b", Step(300), Ttl);
        Clock.Advance(TimeSpan.FromSeconds(1));
        await Memory.AppendAsync("c", Step(100), Ttl);
        Assert.Equal(3, Memory.Size().Runs);

        Clock.Advance(TimeSpan.FromSeconds(1));
        await Memory.AppendAsync("c", Step(100), Ttl); // 164 bytes more: a (the oldest) goes

        Assert.Equal(["b", "c"], (await Memory.ListAsync()).Select(r => r.RunId));
        Assert.Equal(Cost("b", 300) + Cost("c", 100, 100), Memory.Size().Bytes);
        Assert.True(Memory.Size().Bytes <= Options.RecordingMaxBytes);
    }

    [Fact]
    public async Task ARunThatWouldTakeMoreThanRecordingMaxBytesAlone_IsRefused_NotEvictingItself()
    {
        Options = new CacheOptions { RecordingMaxBytes = Cost("a", 500), RecordingMaxRunBytes = 10_000, RecordingMaxRuns = 100 };
        Assert.Equal(1, await Memory.AppendAsync("a", Step(500), Ttl));

        Assert.Equal(0, await Memory.AppendAsync("a", Step(1), Ttl));

        Assert.Single((await Memory.GetAsync("a"))!);
        Assert.Equal(Cost("a", 500), Memory.Size().Bytes);
    }

    [Fact]
    public async Task ReplayCursors_CountTowardsTheBytes_AndGoWithTheirRecording()
    {
        await Memory.AppendAsync("rec", Step(10), Ttl);
        await Memory.NextReplayStepAsync("rec", "replay-1", Ttl);
        await Memory.NextReplayStepAsync("rec", "replay-1", Ttl);
        await Memory.NextReplayStepAsync("never-recorded", "replay-2", Ttl);

        Assert.Equal(Cost("rec", 10) + InMemoryRecordingStore.CursorOverhead + (2 * "replay-1".Length), Memory.Size().Bytes);
        await Memory.DeleteAsync("rec");
        Assert.Equal((0L, 0), Memory.Size());
    }
}

[RequiresRedisServer]
public sealed class RedisRecordingStoreTests(RedisServerFixture redis) : RecordingStoreContractTests, IClassFixture<RedisServerFixture>
{
    private RedisConnection? _connection;
    private RedisRecordingStore? _store;

    protected override IRecordingStore Store => _store ??= new RedisRecordingStore(Connection, () => Options, Prefix, TimeSpan.FromSeconds(2), Clock);

    private RedisConnection Connection => _connection ??= new RedisConnection(redis.ConnectionString, TimeSpan.FromSeconds(2));

    public override void Dispose()
    {
        _connection?.Dispose();
        base.Dispose();
    }

    [RedisFact]
    public async Task EveryKeyOfARun_ExpiresWithTheRecordingTtl()
    {
        await Store.AppendAsync("run", Step(10), Ttl);
        await Store.AppendAsync("run", Step(2000), Ttl); // refused: the meta key holds the refusal
        await Store.NextReplayStepAsync("run", "replay", Ttl);
        await Store.NextReplayStepAsync("missing", "replay", Ttl);

        using var connection = await ConnectionMultiplexer.ConnectAsync(redis.ConnectionString);
        var keys = connection.GetServer(connection.GetEndPoints()[0]).Keys(pattern: "*" + Prefix + "*").ToArray();
        var database = connection.GetDatabase();
        Assert.Equal(4, keys.Length); // list, meta, cursor, index: nothing for the missing recording
        foreach (var key in keys.Where(k => !((string)k!).EndsWith("recs", StringComparison.Ordinal)))
        {
            var ttl = await database.KeyTimeToLiveAsync(key);
            Assert.True(ttl is { } left && left > TimeSpan.Zero && left <= Ttl, $"{key} has TTL {ttl}");
        }
    }

    [Fact]
    public void RunKeys_ShareTheListsHashSlot()
    {
        Assert.Equal("{llmgw:rec:r1}:meta", (string)RedisRecordingStore.RunKey("llmgw:rec:r1", ":meta")!);
        Assert.Equal("{gw}:rec:r1:meta", (string)RedisRecordingStore.RunKey("{gw}:rec:r1", ":meta")!);
    }
}
