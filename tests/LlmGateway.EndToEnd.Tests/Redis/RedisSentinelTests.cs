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
/// A gateway given only a Redis Sentinel (<c>127.0.0.1:port,serviceName=mymaster</c>) finds the primary through it and
/// enforces budgets there: a real <c>redis-server --sentinel</c> on loopback monitoring a real redis-server.
/// </summary>
[RequiresRedisServer]
public sealed class RedisSentinelTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private readonly string _directory = Directory.CreateTempSubdirectory("llmgw-sentinel-").FullName;
    private Process? _sentinel;
    private int _port;
    private MockLlmServer _mock = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _port = FreePort();
        var config = Path.Combine(_directory, "sentinel.conf");
        await File.WriteAllTextAsync(config, string.Create(CultureInfo.InvariantCulture, $"port {_port}\nbind 127.0.0.1\ndir {_directory}\nsentinel monitor mymaster 127.0.0.1 {redis.Port} 1\nsentinel down-after-milliseconds mymaster 60000\n"));
        var start = new ProcessStartInfo(RedisServer.ExecutablePath!, [config, "--sentinel"]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        _sentinel = Process.Start(start) ?? throw new InvalidOperationException("redis-server --sentinel did not start");
        _sentinel.OutputDataReceived += static (_, _) => { };
        _sentinel.ErrorDataReceived += static (_, _) => { };
        _sentinel.BeginOutputReadLine();
        _sentinel.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (Command("SENTINEL get-master-addr-by-name mymaster")?.Contains(redis.Port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal) != true)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), "the Sentinel did not name the primary within 20 s");
            await Task.Delay(50);
        }
    }

    public async Task DisposeAsync()
    {
        if (_sentinel is { HasExited: false })
        {
            _sentinel.Kill(entireProcessTree: true);
            await _sentinel.WaitForExitAsync();
        }

        _sentinel?.Dispose();
        await _mock.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    [RedisFact]
    public async Task GatewayGivenASentinel_UsesThePrimaryItNames()
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
            "Users": { "spender": { "Budget": { "Usd": 0.03, "Period": "Day" } } }
          }
        }
        """);
        await gateway.WaitReadyAsync();

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 4; i++)
        {
            using var response = await gateway.Client.SendAsync(BudgetCalls.Metered("sk-spender", content: $"via sentinel {i}"));
            statuses.Add(response.StatusCode);
        }

        Assert.Equal([HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.OK, HttpStatusCode.TooManyRequests], statuses);
        using var state = await gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/users/spender"));
        Assert.Equal(0.03m, JsonDocument.Parse(await state.Content.ReadAsStringAsync()).RootElement.GetProperty("spent_usd").GetDecimal());

        // The budget lives on the primary the Sentinel named (the user's control hash, written by every admission).
        Assert.StartsWith(":1", redis.TryCommand($"EXISTS {prefix}{{u:spender}}"), StringComparison.Ordinal);
    }

    private string? Command(string command)
    {
        try
        {
            using var client = new TcpClient();
            client.SendTimeout = client.ReceiveTimeout = 2000;
            client.Connect(IPAddress.Loopback, _port);
            using var stream = client.GetStream();
            stream.Write(Encoding.ASCII.GetBytes(command + "\r\n"));
            var buffer = new byte[1024];
            var read = stream.Read(buffer);
            return Encoding.ASCII.GetString(buffer, 0, read);
        }
        catch (Exception exception) when (exception is SocketException or IOException)
        {
            return null;
        }
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        finally
        {
            listener.Stop();
        }
    }
}
