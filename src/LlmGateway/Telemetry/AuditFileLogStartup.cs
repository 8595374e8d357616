using Microsoft.Extensions.Logging;

namespace LlmGateway.Telemetry;

/// <summary>
/// Gives the audit file's writer a log for its own failures once the host's logging exists (the writer is a logging
/// provider itself, so it is created before any logger).
/// </summary>
internal sealed class AuditFileLogStartup(AuditFileLoggerProvider auditLog, ILogger<AuditFileWriter> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        auditLog.Writer.SetErrorLog(logger);
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
