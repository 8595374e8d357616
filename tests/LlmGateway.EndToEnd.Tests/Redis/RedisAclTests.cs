using System.Net;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.Tests.Shared;

namespace LlmGateway.EndToEnd.Tests.Redis;

/// <summary>
/// Redis with an ACL user (<c>ACL SETUSER</c> on the test's own redis-server): the gateway connects as that user with
/// StackExchange.Redis's <c>user=</c>/<c>password=</c>, and a wrong password stops start-up naming the setting, never
/// the password.
/// </summary>
[RequiresRedisServer]
public sealed class RedisAclTests : IClassFixture<RedisServerFixture>, IAsyncLifetime
{
    private const string User = "gwuser";
    private const string Password = "s3cret-acl-pass-91";
    private const string AdminPassword = "admin-acl-pass-42";
    private readonly RedisServerFixture _redis;
    private MockLlmServer _mock = null!;

    public RedisAclTests(RedisServerFixture redis) => _redis = redis;

    public async Task InitializeAsync()
    {
        if (!_redis.IsRunning)
        {
            _redis.Start();
        }

        // AUTH as default works before its password is set too: a user with nopass takes any password.
        Assert.Equal("+OK", AuthenticatedCommand($"ACL SETUSER {User} on >{Password} ~* &* +@all"));

        // As a managed Redis is: the default user needs a password too (else a client whose AUTH fails goes on as it).
        // This class has a redis-server of its own, so nothing else is locked out.
        Assert.Equal("+OK", AuthenticatedCommand($"ACL SETUSER default on >{AdminPassword}"));
        _mock = await MockLlmServer.StartAsync();
    }

    public async Task DisposeAsync() => await _mock.DisposeAsync();

    [RedisFact]
    public async Task AclUser_WithItsPassword_EnforcesLimitsThroughRedis()
    {
        var config = TestConfigs.Budgets(_mock.BaseUrl, $"{_redis.ConnectionString},user={User},password={Password}", storeTimeout: "00:00:02");
        await using var gateway = await GatewayProcess.StartAsync(config);

        var statuses = new List<HttpStatusCode>();
        for (var i = 0; i < 6; i++)
        {
            using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: $"acl {i}"), "sk-rpm"));
            statuses.Add(response.StatusCode);
        }

        // rpm-user has Rpm 5: the sixth is refused, so the window lives in Redis under this user's connection.
        Assert.Equal([.. Enumerable.Repeat(HttpStatusCode.OK, 5), HttpStatusCode.TooManyRequests], statuses);
        Assert.NotEqual(":0", AuthenticatedCommand("DBSIZE"));
    }

    /// <summary>A command as the default user, which has a password in this class; the reply's first line.</summary>
    private string? AuthenticatedCommand(string command)
    {
        using var client = new System.Net.Sockets.TcpClient();
        client.ReceiveTimeout = 2000;
        client.Connect(IPAddress.Loopback, _redis.Port);
        using var stream = client.GetStream();
        stream.Write(System.Text.Encoding.ASCII.GetBytes($"AUTH default {AdminPassword}\r\n{command}\r\n"));
        var text = string.Empty;
        var buffer = new byte[512];
        while (text.Split("\r\n").Length < 3)
        {
            var read = stream.Read(buffer);
            if (read == 0)
            {
                break;
            }

            text += System.Text.Encoding.ASCII.GetString(buffer, 0, read);
        }

        var lines = text.Split("\r\n");
        Assert.Equal("+OK", lines[0]);
        return lines.Length > 1 ? lines[1] : null;
    }

    [RedisFact]
    public async Task WrongPassword_StopsStartUp_NamingTheSetting_NeverThePassword()
    {
        const string wrong = "not-the-password-7731";
        var config = TestConfigs.Budgets(_mock.BaseUrl, $"{_redis.ConnectionString},user={User},password={wrong}");

        var (exitCode, output) = await GatewayProcess.RunToExitAsync(config, "--config", "{config}", "--urls", "http://127.0.0.1:0");

        Assert.Equal(2, exitCode);
        Assert.Contains("config error: Gateway:Redis: Redis refused the credentials of user 'gwuser'", output);
        Assert.DoesNotContain(wrong, output);
        Assert.DoesNotContain(Password, output);
        Assert.DoesNotContain("   at ", output);
    }
}
