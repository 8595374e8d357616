using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using LlmGateway.Redis;
using LlmGateway.Tests.Shared;
using StackExchange.Redis;

namespace LlmGateway.Tests.Redis;

/// <summary>The lean client the admission scripts run on, against a real redis-server (and a fake one that talks nonsense).</summary>
[RequiresRedisServer]
public sealed class RedisScriptClientTests(RedisServerFixture redis) : IClassFixture<RedisServerFixture>
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(2);

    private static readonly RedisScript Echo = new("echo", "return { #KEYS, ARGV[1], tonumber(ARGV[2]) * 2, KEYS[1] }");

    [RedisFact]
    public async Task EvaluatesBySha_AndLoadsTheSourceAgainAfterTheScriptCacheIsFlushed()
    {
        using var client = Create(redis.ConnectionString);
        for (var round = 0; round < 2; round++)
        {
            var reply = await client.EvaluateAsync(Echo, ["k:é"], ["hello", "21"]).WaitAsync(Timeout);

            Assert.Equal(RespKind.Array, reply.Kind);
            Assert.Equal(1, reply.Items![0].AsInt64());
            Assert.Equal("hello", reply.Items[1].Text);
            Assert.Equal(42, reply.Items[2].AsInt64());
            Assert.Equal("k:é", reply.Items[3].Text);
            Assert.Equal("+OK", redis.TryCommand("SCRIPT FLUSH"));
        }
    }

    [RedisFact]
    public async Task ConcurrentCalls_ArePipelined_AndEachGetsItsOwnReply()
    {
        using var client = Create(redis.ConnectionString);
        var calls = Enumerable.Range(0, 500).Select(async i =>
        {
            var bytes = BitConverter.GetBytes((double)i); // binary arguments travel untouched
            var reply = await client.EvaluateAsync(new RedisScript("unpack", "return { struct.unpack('<d', ARGV[1]), ARGV[2] }"), [], [bytes, "n" + i]);
            return (i, reply.Items![0].AsInt64(), reply.Items[1].Text);
        });

        foreach (var (i, number, text) in await Task.WhenAll(calls).WaitAsync(TimeSpan.FromSeconds(10)))
        {
            Assert.Equal((i, "n" + i), ((int)number, text));
        }
    }

    [RedisFact]
    public async Task ScriptError_IsReported_AndTheConnectionGoesOn()
    {
        using var client = Create(redis.ConnectionString);
        var error = await Assert.ThrowsAsync<RedisScriptException>(() => client.EvaluateAsync(new RedisScript("bad", "return redis.call('NOSUCHCOMMAND')"), [], []));

        Assert.Contains("Unknown Redis command", error.Message, StringComparison.Ordinal);
        Assert.False(RedisConnection.IsUnavailable(error)); // a bug, not an outage
        Assert.Equal(42, (await client.EvaluateAsync(Echo, ["k"], ["x", "21"])).Items![2].AsInt64());
    }

    [RedisFact]
    public async Task Password_IsSent_AndAWrongOneIsNeverEchoed()
    {
        Assert.Equal("+OK", redis.TryCommand("CONFIG SET requirepass s3cret-pw"));
        try
        {
            using (var client = Create(redis.ConnectionString + ",password=s3cret-pw"))
            {
                Assert.Equal(42, (await client.EvaluateAsync(Echo, ["k"], ["x", "21"]).WaitAsync(Timeout)).Items![2].AsInt64());
                await client.PingAsync().WaitAsync(Timeout);
            }

            using (var wrong = Create(redis.ConnectionString + ",password=not-the-pw"))
            {
                var error = await Assert.ThrowsAsync<RedisScriptException>(() => wrong.EvaluateAsync(Echo, ["k"], ["x", "21"]).WaitAsync(Timeout));
                Assert.DoesNotContain("not-the-pw", error.Message, StringComparison.Ordinal);
            }

            using var none = Create(redis.ConnectionString);
            var refused = await Assert.ThrowsAsync<RedisScriptException>(() => none.EvaluateAsync(Echo, ["k"], ["x", "21"]).WaitAsync(Timeout));
            Assert.StartsWith("NOAUTH", refused.Message, StringComparison.Ordinal);
        }
        finally
        {
            // One connection: AUTH, then lift the password for the other tests.
            redis.TryCommand("AUTH s3cret-pw\r\nCONFIG SET requirepass \"\"");
            Assert.Equal("+PONG", redis.TryCommand("PING"));
        }
    }

    [RedisFact]
    public async Task DefaultDatabase_IsSelected()
    {
        var set = new RedisScript("set", "redis.call('SET', KEYS[1], 'v') return 1");
        var exists = new RedisScript("exists", "return redis.call('EXISTS', KEYS[1])");
        var key = "db-test:" + Guid.NewGuid().ToString("N");
        using var db3 = Create(redis.ConnectionString + ",defaultDatabase=3");
        using var db0 = Create(redis.ConnectionString);

        await db3.EvaluateAsync(set, [key], []).WaitAsync(Timeout);

        Assert.Equal(1, (await db3.EvaluateAsync(exists, [key], []).WaitAsync(Timeout)).AsInt64());
        Assert.Equal(0, (await db0.EvaluateAsync(exists, [key], []).WaitAsync(Timeout)).AsInt64());
    }

    [RedisFact]
    public async Task HungRedis_CallsTimeOut_ThenTheConnectionIsReplacedAndWorks()
    {
        using var client = Create(redis.ConnectionString);
        await client.PingAsync().WaitAsync(Timeout);

        // A script that keeps Redis busy for 1.5 s: everything else waits, as with a hung server.
        var busy = Task.Factory.StartNew(() => redis.TryCommand(
            "EVAL \"local s = redis.call('TIME') while true do local n = redis.call('TIME') if (n[1] - s[1]) * 1000000 + n[2] - s[2] > 1500000 then return 1 end end\" 0"),
            CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default); // blocks a thread of its own, not a pool worker
        await Task.Delay(100);
        var stuck = client.EvaluateAsync(Echo, ["k"], ["x", "21"]);
        await Assert.ThrowsAsync<TimeoutException>(() => stuck.WaitAsync(TimeSpan.FromMilliseconds(200)));
        RedisConnection.Observe(stuck);

        // Past the stale limit (0.5 s here) the next call gives the old connection up and queues on a new one.
        await Task.Delay(600);
        var clock = Stopwatch.StartNew();
        var reply = await client.EvaluateAsync(Echo, ["k"], ["x", "21"]).WaitAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(42, reply.Items![2].AsInt64());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(3), $"took {clock.Elapsed}");
        await busy;

        // The stuck call ended either way: failed with its given-up connection, or answered if Redis woke first.
        await Task.WhenAny(stuck, Task.Delay(Timeout));
        Assert.True(stuck.IsCompleted);
    }

    [Fact]
    public async Task ServerTalkingNonsense_FailsTheCall_AsUnavailable()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        var server = Task.Run(async () =>
        {
            using var socket = await listener.AcceptSocketAsync();
            var buffer = new byte[4096];
            _ = await socket.ReceiveAsync(buffer);
            await socket.SendAsync(Encoding.ASCII.GetBytes("HTTP/1.1 400 Bad Request\r\n\r\n"));
            await Task.Delay(500);
        });
        using var client = Create($"127.0.0.1:{port}");

        var error = await Assert.ThrowsAnyAsync<Exception>(() => client.EvaluateAsync(Echo, ["k"], ["x", "21"]).WaitAsync(Timeout));

        Assert.True(RedisConnection.IsUnavailable(error), error.ToString());
        await server;
    }

    [Fact]
    public async Task NothingListening_FailsFast_AsUnavailable()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        using var client = Create($"127.0.0.1:{port}");

        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAnyAsync<Exception>(() => client.EvaluateAsync(Echo, ["k"], ["x", "21"]).WaitAsync(Timeout));

        Assert.True(RedisConnection.IsUnavailable(error), error.ToString());
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1), $"took {clock.Elapsed}");
    }

    [Theory]
    [InlineData("127.0.0.1:6379,ssl=true")]
    [InlineData("127.0.0.1:6379,127.0.0.1:6380")]
    [InlineData("127.0.0.1:6379,serviceName=mymaster")]
    [InlineData("127.0.0.1:6379,proxy=Twemproxy")]
    public void ConfigurationsItDoesNotHandle_StayOnTheMultiplexer(string configuration) =>
        Assert.Null(RedisScriptClient.TryCreate(ConfigurationOptions.Parse(configuration), Timeout, Timeout));

    private static RedisScriptClient Create(string configuration)
    {
        var options = ConfigurationOptions.Parse(configuration);
        options.SetDefaultPorts();
        return RedisScriptClient.TryCreate(options, TimeSpan.FromSeconds(1), TimeSpan.FromMilliseconds(500))
            ?? throw new InvalidOperationException("expected a plain configuration");
    }
}
