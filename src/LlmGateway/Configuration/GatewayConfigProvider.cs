using LlmGateway.Telemetry;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Configuration;

/// <summary>
/// Holds the active config and swaps it when the file changes. The file is polled (mtime, size, then a
/// content hash) rather than watched: polling also sees atomic renames by editors and changes on
/// container volumes where inotify events do not arrive. An invalid edit is logged with every reason
/// and the last good config keeps serving.
/// </summary>
internal sealed class GatewayConfigProvider : BackgroundService
{
    private readonly ILogger<GatewayConfigProvider> _logger;
    private readonly GatewayMetrics _metrics;
    private readonly TimeSpan _pollInterval;
    private volatile GatewayConfig _current;
    private DateTime _lastWrite;
    private long _lastLength;
    private string? _lastRejectedVersion;

    public GatewayConfigProvider(GatewayConfigFile file, ILogger<GatewayConfigProvider> logger, GatewayMetrics metrics)
    {
        ArgumentNullException.ThrowIfNull(file);
        Path = file.Path;
        _pollInterval = file.PollInterval;
        _logger = logger;
        _metrics = metrics;

        // Start-up fails loudly on a bad file: there is no last good config to fall back to.
        var info = new FileInfo(Path);
        _lastWrite = info.LastWriteTimeUtc;
        _lastLength = info.Length;
        _current = GatewayConfigLoader.Load(File.ReadAllBytes(Path));
        _metrics.SetConfigVersion(_current.Version);
        ConfigLog.Loaded(_logger, _current.Version, Path);
    }

    public string Path { get; }

    public GatewayConfig Current => _current;

    /// <summary>Raised after a new config became active.</summary>
    public event Action<GatewayConfig>? Changed;

    /// <summary>Checks the file now; returns true when a new config became active.</summary>
    public bool TryReload()
    {
        FileInfo info;
        byte[] bytes;
        try
        {
            info = new FileInfo(Path);
            if (!info.Exists)
            {
                return false;
            }

            if (info.LastWriteTimeUtc == _lastWrite && info.Length == _lastLength)
            {
                return false;
            }

            bytes = File.ReadAllBytes(Path);
        }
        catch (IOException ex)
        {
            // An editor may be mid-write; the next poll sees the finished file.
            ConfigLog.ReadFailed(_logger, Path, ex.Message);
            return false;
        }

        _lastWrite = info.LastWriteTimeUtc;
        _lastLength = info.Length;
        try
        {
            var next = GatewayConfigLoader.Load(bytes);
            if (next.Version == _current.Version)
            {
                return false;
            }

            _current = next;
            _lastRejectedVersion = null;
            _metrics.SetConfigVersion(next.Version);
            _metrics.RecordConfigReload(success: true);
            ConfigLog.Reloaded(_logger, next.Version, Path);
            Changed?.Invoke(next);
            return true;
        }
        catch (GatewayConfigException ex)
        {
            _metrics.RecordConfigReload(success: false);
            var version = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes), 0, 6);
            if (version != _lastRejectedVersion)
            {
                _lastRejectedVersion = version;
                foreach (var error in ex.Errors)
                {
                    ConfigLog.Rejected(_logger, Path, _current.Version, error);
                }
            }

            return false;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(_pollInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                TryReload();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}

/// <summary>Where the config file is and how often it is checked for changes.</summary>
internal sealed record GatewayConfigFile(string Path, TimeSpan PollInterval);

internal static partial class ConfigLog
{
    [LoggerMessage(EventId = GatewayEventIds.ConfigLoaded, EventName = "ConfigLoaded", Level = LogLevel.Information, Message = "Config {Version} loaded from {Path}")]
    public static partial void Loaded(ILogger logger, string version, string path);

    [LoggerMessage(EventId = GatewayEventIds.ConfigReloaded, EventName = "ConfigReloaded", Level = LogLevel.Information, Message = "Config {Version} reloaded from {Path}")]
    public static partial void Reloaded(ILogger logger, string version, string path);

    [LoggerMessage(EventId = GatewayEventIds.ConfigRejected, EventName = "ConfigRejected", Level = LogLevel.Error, Message = "Config edit in {Path} rejected, {ActiveVersion} stays active: {Error}")]
    public static partial void Rejected(ILogger logger, string path, string activeVersion, string error);

    [LoggerMessage(EventId = GatewayEventIds.ConfigReadFailed, EventName = "ConfigReadFailed", Level = LogLevel.Warning, Message = "Config file {Path} could not be read: {Reason}")]
    public static partial void ReadFailed(ILogger logger, string path, string reason);
}
