using Microsoft.Extensions.Hosting;

namespace LlmGateway.Runs;

/// <summary>On graceful stop, writes the Redis run ledger's queued calls while Redis and the host are still up (disposal flushes again, for what came later).</summary>
internal sealed class RunLedgerStopFlush(IRunLedger ledger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) =>
        ledger is RedisRunLedger redis ? redis.FlushAsync(cancellationToken) : Task.CompletedTask;
}
