using System.Text;
using LlmGateway.Configuration;
using LlmGateway.Tools;
using Microsoft.Extensions.Time.Testing;

namespace LlmGateway.Tests.Tools;

public sealed class ToolRunCacheTests
{
    private readonly FakeTimeProvider _time = new();
    private readonly ToolRunCache _cache;

    public ToolRunCacheTests() => _cache = new ToolRunCache(_time);

    [Fact]
    public void Get_IsScopedByRunToolUserMethodPathAndQuery()
    {
        var options = new ToolRunCacheOptions();
        _cache.Store("run-1", "catalog", "alice", "GET", "/p/1?x=1", 0, Answer("a"), options);

        Assert.True(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/1?x=1", 0, out var hit));
        Assert.Equal("a"u8.ToArray(), hit!.Body);
        Assert.False(_cache.TryGet("run-2", "catalog", "alice", "GET", "/p/1?x=1", 0, out _));
        Assert.False(_cache.TryGet("run-1", "crm", "alice", "GET", "/p/1?x=1", 0, out _));
        Assert.False(_cache.TryGet("run-1", "catalog", "bob", "GET", "/p/1?x=1", 0, out _));
        Assert.False(_cache.TryGet("run-1", "catalog", "alice", "HEAD", "/p/1?x=1", 0, out _));
        Assert.False(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/1?x=2", 0, out _));
    }

    [Fact]
    public void Entries_ExpireAfterTheirTtl()
    {
        _cache.Store("run-1", "catalog", "alice", "GET", "/p/1", 0, Answer("a"), new ToolRunCacheOptions { Ttl = TimeSpan.FromMinutes(5) });

        _time.Advance(TimeSpan.FromMinutes(4));
        Assert.True(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/1", 0, out _));
        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.False(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/1", 0, out _));
        Assert.Equal(0, _cache.TotalBytes);
    }

    [Fact]
    public void Clear_ForgetsTheRunsEntriesForTheToolOnly()
    {
        var options = new ToolRunCacheOptions();
        _cache.Store("run-1", "catalog", "alice", "GET", "/p/1", 0, Answer("a"), options);
        _cache.Store("run-1", "crm", "alice", "GET", "/c/1", 0, Answer("b"), options);
        _cache.Store("run-2", "catalog", "alice", "GET", "/p/1", 0, Answer("c"), options);

        _cache.Clear("run-1", "catalog");

        Assert.False(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/1", 0, out _));
        Assert.True(_cache.TryGet("run-1", "crm", "alice", "GET", "/c/1", 0, out _));
        Assert.True(_cache.TryGet("run-2", "catalog", "alice", "GET", "/p/1", 0, out _));
    }

    [Fact]
    public void ARunsEntries_StayWithinMaxRunBytes_OldestOutFirst_AndLargeAnswersAreNotKept()
    {
        var options = new ToolRunCacheOptions { MaxRunBytes = 3000, MaxEntryBytes = 1500 };
        _cache.Store("run-1", "catalog", "alice", "GET", "/p/1", 0, Answer(new string('a', 1000)), options);
        _cache.Store("run-1", "catalog", "alice", "GET", "/p/2", 0, Answer(new string('b', 1000)), options);
        _cache.Store("run-1", "catalog", "alice", "GET", "/p/3", 0, Answer(new string('c', 1000)), options);
        _cache.Store("run-1", "catalog", "alice", "GET", "/p/big", 0, Answer(new string('d', 2000)), options);

        Assert.False(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/1", 0, out _));
        Assert.True(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/2", 0, out _));
        Assert.True(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/3", 0, out _));
        Assert.False(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/big", 0, out _));
        Assert.InRange(_cache.TotalBytes, 2000, 3000);
    }

    [Fact]
    public void AllRuns_StayWithinMaxTotalBytes()
    {
        var options = new ToolRunCacheOptions { MaxRunBytes = 2 * 1024 * 1024, MaxEntryBytes = 1024 * 1024 };
        var body = new string('x', 1024 * 1024 - 1000);
        for (var run = 0; run < 100; run++)
        {
            _cache.Store("run-" + run, "catalog", "alice", "GET", "/p/1", 0, Answer(body), options);
        }

        Assert.InRange(_cache.TotalBytes, ToolRunCache.MaxTotalBytes - (1024 * 1024), ToolRunCache.MaxTotalBytes);
        Assert.False(_cache.TryGet("run-0", "catalog", "alice", "GET", "/p/1", 0, out _));
        Assert.True(_cache.TryGet("run-99", "catalog", "alice", "GET", "/p/1", 0, out _));
    }

    [Fact]
    public void AnEntry_StoredUnderAnOlderGeneration_IsNotServed()
    {
        _cache.Store("run-1", "catalog", "alice", "GET", "/p/1", 3, Answer("a"), new ToolRunCacheOptions());

        Assert.True(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/1", 3, out _));
        Assert.False(_cache.TryGet("run-1", "catalog", "alice", "GET", "/p/1", 4, out _));
        Assert.Equal(0, _cache.TotalBytes);
    }

    [Theory]
    [InlineData("GET", true)]
    [InlineData("get", true)]
    [InlineData("HEAD", false)]
    [InlineData("POST", false)]
    public void IsCached_DefaultsToGetOnly(string method, bool expected) =>
        Assert.Equal(expected, ToolRunCache.IsCached(new ToolRunCacheOptions(), method));

    private static StoredToolResponse Answer(string body) => new(200, [new("Content-Type", ["application/json"])], Encoding.UTF8.GetBytes(body));
}
