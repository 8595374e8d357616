using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Approvals;

/// <summary>
/// Lists pending approvals every <see cref="ApprovalConstants.MonitorInterval"/>: keeps the pending gauges current (the
/// alert on approvals pending longer than 10 minutes reads them) and counts approvals that expired undecided.
/// </summary>
internal sealed class ApprovalMonitor(ApprovalDecisions decisions, TimeProvider time, ILogger<ApprovalMonitor> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    await decisions.ListPendingAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (ApprovalStoreUnavailableException ex)
                {
                    ApprovalLog.StoreUnavailable(logger, "monitor", ex.Message);
                }

                await Task.Delay(ApprovalConstants.MonitorInterval, time, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
