using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Budgets;

/// <summary>
/// Every budget, rate-limit and run-control test of <see cref="BudgetEnforcementTests"/> again, on one gateway with
/// <c>Gateway:Store:Leases</c> on a real redis-server (a fresh key prefix per test): one replica with leases must answer
/// as the in-memory store does — budgets, rate windows and in-flight caps on blocks, the run's limits per call — except
/// that a 200-call burst against $1.00 may admit a few less than the 100 that fit (97 once in CI), never more.
/// Needs redis-server (CI installs it).
/// </summary>
[RequiresRedisServer]
public sealed class LeasedBudgetEnforcementTests(RedisServerFixture redis) : BudgetEnforcementTests, IClassFixture<RedisServerFixture>
{
    protected override bool ExactUnderBursts => false;

    protected override string Config(string mockBaseUrl)
    {
        if (!redis.IsRunning)
        {
            redis.Start();
        }

        var config = TestConfigs.Budgets(mockBaseUrl, redis.ConnectionString, storeTimeout: "00:00:01")
            .Replace("\"Store\": { ", "\"Store\": { \"Leases\": true, ", StringComparison.Ordinal);
        Assert.Contains("\"Leases\": true", config, StringComparison.Ordinal);
        return config;
    }
}
