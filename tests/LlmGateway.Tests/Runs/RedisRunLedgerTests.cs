using LlmGateway.Redis;
using LlmGateway.Runs;
using LlmGateway.Tests.Shared;
using Microsoft.Extensions.Logging.Testing;

namespace LlmGateway.Tests.Runs;

/// <summary>The ledger contract on a real redis-server; every <see cref="RunLedgerContractTests.NewLedger"/> is another replica (its own connection).</summary>
[RequiresRedisServer]
public sealed class RedisRunLedgerTests(RedisServerFixture redis) : RunLedgerContractTests, IClassFixture<RedisServerFixture>
{
    private readonly FakeLogger<RedisRunLedger> _logger = new();
    private readonly string _prefix = "test-" + Guid.NewGuid().ToString("N")[..12] + ":";

    protected override string Diagnostics => string.Join("\n", _logger.Collector.GetSnapshot().Select(r => r.Message));

    internal override IRunLedger CreateLedger()
    {
        if (!redis.IsRunning)
        {
            redis.Start();
        }

        var connection = new RedisConnection(redis.ConnectionString, TimeSpan.FromSeconds(2));
        Own(connection);
        return new RedisRunLedger(connection, _prefix, Idle, TimeSpan.FromSeconds(2), Time, _logger);
    }
}
