using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Tests.Redis;

// The plain constructors: how an error looks does not depend on the flags the newer overloads take.
#pragma warning disable CS0618

/// <summary>
/// Every error Redis or its client can report is "the store is unavailable" (the caller's OnUnavailable policy, with a
/// log line), never an exception that escapes as a 500 or an empty reply. The real ones are injected in
/// RedisAdmissionStoreTests (OOM, READONLY, NOSCRIPT) and RedisClusterAdmissionStoreTests (CROSSSLOT, NOSCRIPT on every node).
/// </summary>
public sealed class RedisConnectionTests
{
    [Theory]
    [InlineData("CROSSSLOT Keys in request don't hash to the same slot")]
    [InlineData("MOVED 3999 127.0.0.1:6381")]
    [InlineData("ASK 3999 127.0.0.1:6381")]
    [InlineData("READONLY You can't write against a read only replica.")]
    [InlineData("OOM command not allowed when used memory > 'maxmemory'.")]
    [InlineData("NOSCRIPT No matching script. Please use EVAL.")]
    [InlineData("CLUSTERDOWN The cluster is down")]
    [InlineData("TRYAGAIN Multiple keys request during rehashing of slot")]
    [InlineData("MASTERDOWN Link with MASTER is down")]
    [InlineData("ERR user_script:12: Script attempted to access nonexistent global variable")]
    public void ServerErrors_AreUnavailable(string message) =>
        Assert.True(RedisConnection.IsUnavailable(new RedisServerException(message)));

    [Fact]
    public void ClientErrors_AreUnavailable()
    {
        Assert.True(RedisConnection.IsUnavailable(new RedisConnectionException(ConnectionFailureType.UnableToConnect, "no connection")));
        Assert.True(RedisConnection.IsUnavailable(new RedisTimeoutException("timeout", CommandStatus.Sent)));
        Assert.True(RedisConnection.IsUnavailable(new RedisCommandException("Multi-key operations must involve a single slot")));
        Assert.True(RedisConnection.IsUnavailable(new TimeoutException()));
    }

    [Fact]
    public void GatewayBugs_AreNotRedisTrouble() =>
        Assert.False(RedisConnection.IsUnavailable(new InvalidOperationException("a bug")));
}
