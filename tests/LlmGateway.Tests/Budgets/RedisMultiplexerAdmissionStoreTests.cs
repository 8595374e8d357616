using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;

namespace LlmGateway.Tests.Budgets;

/// <summary>
/// The contract suite again with the scripts on the StackExchange.Redis multiplexer: the path configurations the lean
/// script client does not handle (TLS, Sentinel, several endpoints, proxies) take, with its replies converted.
/// </summary>
[RequiresRedisServer]
public sealed class RedisMultiplexerAdmissionStoreTests(RedisServerFixture redis) : AdmissionStoreContractTests, IClassFixture<RedisServerFixture>
{
    private readonly List<RedisConnection> _connections = [];

    [RedisFact]
    public async Task TheScriptClientIsOff()
    {
        Assert.True((await Store.ReserveAsync(Request())).IsAdmitted);
        Assert.NotEmpty(_connections);
        Assert.All(_connections, connection => Assert.False(connection.HasScriptClient));
    }

    protected override IAdmissionStore CreateStore(AdmissionStoreOptions options, TimeProvider timeProvider)
    {
        var connection = new RedisConnection(redis.ConnectionString, options.ConnectTimeout, scriptClient: false);
        _connections.Add(connection);

        // The multiplexer's handshake is several round trips: done here, so a loaded machine cannot make a test's
        // first call time out on it (what these tests check is the scripts on this path, not connecting).
        connection.ConnectAsync().WaitAsync(TimeSpan.FromSeconds(20)).GetAwaiter().GetResult();
        return new RedisAdmissionStore(connection, options, timeProvider, ownsConnection: true);
    }
}
