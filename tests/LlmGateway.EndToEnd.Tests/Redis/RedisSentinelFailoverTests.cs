using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// A Sentinel fail-over under a running gateway: a real primary, its real replica and a real
/// <c>redis-server --sentinel</c> on loopback. The primary is killed; the Sentinel promotes the replica; the gateway,
/// given only the Sentinel's address, follows it without a restart, and the budget carries over exactly.
/// </summary>
[RequiresRedisServer]
public sealed class RedisSentinelFailoverTests : IAsyncLifetime
{
    private const decimal CallUsd = 0.01m;
    private readonly string _directory = Directory.CreateTempSubdirectory("llmgw-sentinel-fo-").FullName;
    private RedisServerFixture _primary = null!;
    private RedisServerFixture _replica = null!;
    private Process? _sentinel;
    private int _port;
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _primary = new RedisServerFixture();
        _replica = new RedisServerFixture(["--replicaof", "127.0.0.1", _primary.Port.ToString(CultureInfo.InvariantCulture)]);
        _port = RedisServerFixture.FreePort();
        var config = Path.Combine(_directory, "sentinel.conf");
        await File.WriteAllTextAsync(config, string.Create(CultureInfo.InvariantCulture,
            $"port {_port}\nbind 127.0.0.1\ndir {_directory}\nsentinel monitor mymaster 127.0.0.1 {_primary.Port} 1\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 10000\n"));
        var start = new ProcessStartInfo(RedisServer.ExecutablePath!, [config, "--sentinel"]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        _sentinel = Process.Start(start) ?? throw new InvalidOperationException("redis-server --sentinel did not start");
        _sentinel.OutputDataReceived += static (_, _) => { };
        _sentinel.ErrorDataReceived += static (_, _) => { };
        _sentinel.BeginOutputReadLine();
        _sentinel.BeginErrorReadLine();

        // The Sentinel learns the replica from the primary's INFO (every 10 s): wait until it knows both.
        var replicaPort = _replica.Port.ToString(CultureInfo.InvariantCulture);
        await Eventually(() => Sentinel("SENTINEL get-master-addr-by-name mymaster")?.Contains(_primary.Port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal) == true
            && Sentinel("SENTINEL replicas mymaster")?.Contains(replicaPort, StringComparison.Ordinal) == true, "the Sentinel to know the primary and its replica", 40);
    }

    public async Task DisposeAsync()
    {
        if (_sentinel is { HasExited: false })
        {
            _sentinel.Kill(entireProcessTree: true);
            await _sentinel.WaitForExitAsync();
        }

        _sentinel?.Dispose();
        _replica?.Dispose();
        _primary?.Dispose();
        await _mock.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [RedisFact]
    public async Task PrimaryKilled_SentinelPromotesTheReplica_GatewayFollowsWithoutRestart_AndTheBudgetCarriesOverExactly()
    {
        var prefix = "llmgw-" + Guid.NewGuid().ToString("N")[..8] + ":";
        await using var gateway = await GatewayServer.StartAsync($$"""
        {
          "Gateway": {
            "Redis": "127.0.0.1:{{_port}},serviceName=mymaster",
            "AdminKey": "{{TestConfigs.AdminKey}}",
            "Store": { "OnUnavailable": "Deny", "Timeout": "00:00:02", "KeyPrefix": "{{prefix}}" },
            "Providers": { "mock": { "BaseUrl": "{{_mock.BaseUrl}}/v1" } },
            "Models": { "metered": { "Provider": "mock", "InputUsdPerMTok": 0, "OutputUsdPerMTok": 1000, "DefaultMaxOutputTokens": 10 } },
            "Keys": [ { "Key": "sk-spender", "User": "spender" } ],
            "Users": { "spender": { "Budget": { "Usd": 0.05, "Period": "Day" } } }
          }
        }
        """);
        await gateway.WaitReadyAsync();

        var told = 0m;
        for (var i = 0; i < 2; i++)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"before {i}"));
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            told += Cost(response);
        }

        // Wait until the settled spend is on the replica too (asynchronous replication), then kill the primary.
        await BudgetCalls.SettledAsync(gateway.Client, "/admin/users/spender");
        await Eventually(() => _primary.TryCommand("WAIT 1 1000") == ":1", "the replica to acknowledge the primary's writes", 30);
        _primary.Stop();

        // Until the Sentinel promotes the replica and the gateway follows, calls are refused (Deny), never let through
        // unaccounted; then they are admitted against the spend the promoted replica holds.
        var clock = Stopwatch.StartNew();
        while (true)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"during {clock.ElapsedMilliseconds}"));
            if (response.StatusCode == HttpStatusCode.OK)
            {
                told += Cost(response);
                break;
            }

            Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
            Assert.Contains("store_unavailable", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the gateway did not follow the promoted replica within 60 s");
            await Task.Delay(100);
        }

        // The replica answered as primary (the Sentinel promoted it); the Sentinel names it once its fail-over completes.
        await Eventually(() => Sentinel("SENTINEL get-master-addr-by-name mymaster")?.Contains(_replica.Port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal) == true,
            "the Sentinel to name the promoted replica", 30);

        // The budget of $0.05 carried over: two more calls fit, the next is refused.
        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 3; i++)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"after {i}"));
            statuses.Add(response.StatusCode);
            if (response.StatusCode == HttpStatusCode.OK)
            {
                told += Cost(response);
            }
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        var spent = (await BudgetCalls.SettledAsync(gateway.Client, "/admin/users/spender")).GetProperty("spent_usd").GetDecimal();
        Assert.Equal(5 * CallUsd, told);
        Assert.Equal(told, spent);
    }

    private static decimal Cost(HttpResponseMessage response) =>
        decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture);

    private static async Task Eventually(Func<bool> condition, string what, int seconds)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(seconds), $"waited {seconds} s for {what}");
            await Task.Delay(100);
        }
    }

    private string? Sentinel(string command)
    {
        try
        {
            using var client = new TcpClient();
            client.SendTimeout = client.ReceiveTimeout = 2000;
            client.Connect(IPAddress.Loopback, _port);
            using var stream = client.GetStream();
            stream.Write(Encoding.ASCII.GetBytes(command + "\r\n"));
            var buffer = new byte[4096];
            var read = stream.Read(buffer);
            return Encoding.ASCII.GetString(buffer, 0, read);
        }
        catch (Exception exception) when (exception is SocketException or IOException)
        {
            return null;
        }
    }
}
