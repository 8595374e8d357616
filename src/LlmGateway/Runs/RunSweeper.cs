using LlmGateway.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Runs;

/// <summary>
/// Ends runs that idled past Gateway:Runs:IdleExpiry without an outcome, as <c>unknown</c>: every
/// <see cref="RunConstants.SweepPeriod"/> on every replica. With Redis each idle run is claimed by one replica's sweep
/// (the end script sets the run's end marker only when absent), so it is observed once.
/// </summary>
internal sealed class RunSweeper(RunOutcomes outcomes, GatewayConfigProvider config, TimeProvider time, ILogger<RunSweeper> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var period = RunConstants.SweepPeriod(config.Current.Options.Runs.IdleExpiry);
        using var timer = new PeriodicTimer(period, time);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
            {
                try
                {
                    await outcomes.SweepAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (RunLedgerUnavailableException ex)
                {
                    RunLog.SweepFailed(logger, period.TotalSeconds, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }
}
