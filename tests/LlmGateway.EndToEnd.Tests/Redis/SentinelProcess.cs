using System.Diagnostics;
using System.Globalization;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// A real <c>redis-server --sentinel</c> on a free loopback port monitoring one primary as <c>mymaster</c> (quorum 1),
/// with its config in a temporary directory; killed and cleaned up on dispose.
/// </summary>
internal sealed class SentinelProcess : IAsyncDisposable
{
    private readonly string _directory;
    private readonly Process _process;

    private SentinelProcess(int port, Process process, string directory)
    {
        Port = port;
        _process = process;
        _directory = directory;
    }

    public int Port { get; }

    /// <summary>Starts a Sentinel and waits until it names <paramref name="primaryPort"/> as the primary.</summary>
    /// <param name="downAfterMs">How long the primary must be unreachable before a fail-over.</param>
    public static async Task<SentinelProcess> StartAsync(int primaryPort, int downAfterMs)
    {
        var port = RedisServerFixture.FreePort();
        var directory = Directory.CreateTempSubdirectory("llmgw-sentinel-").FullName;
        var config = Path.Combine(directory, "sentinel.conf");
        await File.WriteAllTextAsync(config, string.Create(CultureInfo.InvariantCulture,
            $"port {port}\nbind 127.0.0.1\ndir {directory}\nsentinel monitor mymaster 127.0.0.1 {primaryPort} 1\nsentinel down-after-milliseconds mymaster {downAfterMs}\nsentinel failover-timeout mymaster 10000\n"));
        var start = new ProcessStartInfo(RedisServer.ExecutablePath!, [config, "--sentinel"]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        var process = Process.Start(start) ?? throw new InvalidOperationException("redis-server --sentinel did not start");
        process.OutputDataReceived += static (_, _) => { };
        process.ErrorDataReceived += static (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var sentinel = new SentinelProcess(port, process, directory);
        await sentinel.WaitUntilAsync(() => sentinel.NamesPrimary(primaryPort), "the Sentinel to name the primary", 20);
        return sentinel;
    }

    /// <summary>Whether the Sentinel names the server on <paramref name="port"/> as mymaster's primary.</summary>
    public bool NamesPrimary(int port) =>
        Command("SENTINEL get-master-addr-by-name mymaster")?.Contains(port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal) == true;

    /// <summary>A gateway config that finds Redis through this Sentinel: one user, "spender", with a daily USD budget on the "metered" model.</summary>
    public string GatewayConfig(string mockBaseUrl, string keyPrefix, decimal budgetUsd) => $$"""
        {
          "Gateway": {
            "Redis": "127.0.0.1:{{Port}},serviceName=mymaster",
            "AdminKey": "{{TestConfigs.AdminKey}}",
            "Store": { "OnUnavailable": "Deny", "Timeout": "00:00:02", "KeyPrefix": "{{keyPrefix}}" },
            "Providers": { "mock": { "BaseUrl": "{{mockBaseUrl}}/v1" } },
            "Models": { "metered": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DefaultMaxOutputTokens": 10 } },
            "Keys": [ { "Key": "sk-spender", "User": "spender" } ],
            "Users": { "spender": { "Budget": { "Usd": {{budgetUsd.ToString(CultureInfo.InvariantCulture)}}, "Period": "Day" } } }
          }
        }
        """;

    /// <summary>Waits (bounded) until <paramref name="condition"/> holds.</summary>
    public Task WaitUntilAsync(Func<bool> condition, string what, int seconds) => Until.TrueAsync(condition, what, seconds);

    /// <summary>One inline command to the Sentinel; its raw reply (up to 4 KB), or null.</summary>
    public string? Command(string command) => RedisServerFixture.Send(Port, command);

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        Directory.Delete(_directory, recursive: true);
    }
}
