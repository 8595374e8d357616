using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace LlmGateway.Tests.Shared;

/// <summary>
/// A real <c>redis-server</c> on a free loopback port, started for one test class (use as a class fixture) and
/// killed on dispose. Nothing is persisted (<c>--save "" --appendonly no</c>). <see cref="Stop"/> and
/// <see cref="Start"/> kill and restart it on the same port, for "Redis went away" tests.
/// </summary>
/// <remarks>
/// Without redis-server on PATH the fixture does nothing and the tests marked <see cref="RedisFactAttribute"/> or
/// <see cref="StoreFactAttribute"/> in a <see cref="RequiresRedisServerAttribute"/> class are skipped, saying so;
/// with the environment variable CI set they fail instead, so CI can never pass by skipping them.
/// </remarks>
public sealed class RedisServerFixture : IDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(10);
    private readonly Lock _lock = new();
    private readonly StringBuilder _output = new();
    private Process? _process;

    private readonly string[] _extraArguments;

    public RedisServerFixture()
        : this([])
    {
    }

    /// <summary>A server started with more arguments (e.g. a TLS port); it still answers plain PING on <see cref="Port"/>.</summary>
    internal RedisServerFixture(string[] extraArguments)
    {
        _extraArguments = extraArguments;
        if (RedisServer.ExecutablePath is null)
        {
            if (RedisServer.IsCi)
            {
                throw new InvalidOperationException(RedisServer.MissingMessage + " CI is set, so the Redis tests fail instead of skipping.");
            }

            return;
        }

        Port = FreePort();
        Start();
    }

    public int Port { get; }

    /// <summary>StackExchange.Redis configuration string for this server.</summary>
    public string ConnectionString => $"127.0.0.1:{Port}";

    public bool IsRunning
    {
        get
        {
            lock (_lock)
            {
                return _process is { HasExited: false };
            }
        }
    }

    /// <summary>Starts the server (again) on <see cref="Port"/> and waits until it answers PING.</summary>
    public void Start()
    {
        var executable = RedisServer.ExecutablePath ?? throw new InvalidOperationException(RedisServer.MissingMessage);
        lock (_lock)
        {
            if (_process is { HasExited: false })
            {
                return;
            }

            _output.Clear();
            var info = new ProcessStartInfo(executable)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = Path.GetTempPath(),
            };
            foreach (var argument in new[] { "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning" }.Concat(_extraArguments))
            {
                info.ArgumentList.Add(argument);
            }

            var process = new Process { StartInfo = info };
            process.OutputDataReceived += (_, e) => Append(e.Data);
            process.ErrorDataReceived += (_, e) => Append(e.Data);
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _process = process;
        }

        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartTimeout)
        {
            if (TryCommand("PING") == "+PONG")
            {
                return;
            }

            if (!IsRunning)
            {
                break;
            }

            Thread.Sleep(20);
        }

        var output = Output();
        Stop();
        throw new InvalidOperationException($"redis-server did not answer PING on 127.0.0.1:{Port} within {StartTimeout.TotalSeconds:0} s. Its output: {output}");
    }

    /// <summary>Kills the server (no shutdown courtesy: as if the machine died) and waits for it to exit.</summary>
    public void Stop()
    {
        Process? process;
        lock (_lock)
        {
            process = _process;
            _process = null;
        }

        if (process is null)
        {
            return;
        }

        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            process.WaitForExit(5000);
        }
        finally
        {
            process.Dispose();
        }
    }

    /// <summary>Sends one inline command (e.g. "SCRIPT FLUSH") and returns the first line of the reply, or null.</summary>
    public string? TryCommand(string command)
    {
        var reply = Send(Port, command, 256);
        if (reply is null)
        {
            return null;
        }

        var end = reply.IndexOf("\r\n", StringComparison.Ordinal);
        return end >= 0 ? reply[..end] : reply;
    }

    /// <summary>One inline command to a Redis (or Sentinel) on a loopback port: the raw reply's first read (up to <paramref name="maxBytes"/>), or null.</summary>
    public static string? Send(int port, string command, int maxBytes = 4096)
    {
        try
        {
            using var client = new TcpClient();
            client.SendTimeout = client.ReceiveTimeout = 2000;
            client.Connect(IPAddress.Loopback, port);
            using var stream = client.GetStream();
            stream.Write(Encoding.ASCII.GetBytes(command + "\r\n"));
            var buffer = new byte[maxBytes];
            var read = stream.Read(buffer);
            return Encoding.ASCII.GetString(buffer, 0, read);
        }
        catch (Exception exception) when (exception is SocketException or IOException)
        {
            return null;
        }
    }

    public void Dispose() => Stop();

    public static int FreePort()
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

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            if (_output.Length < 16_384)
            {
                _output.AppendLine(line);
            }
        }
    }

    private string Output()
    {
        lock (_output)
        {
            return _output.ToString();
        }
    }
}

/// <summary>Where redis-server is, and whether Redis tests run, skip or fail.</summary>
public static class RedisServer
{
    public const string MissingMessage = "redis-server was not found on PATH (install the Debian package redis-server, as .ci/run does).";

    private static readonly Lazy<string?> Executable = new(Find);

    /// <summary>Full path of redis-server, or null.</summary>
    public static string? ExecutablePath => Executable.Value;

    public static bool IsCi => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"));

    /// <summary>Why Redis tests are skipped here; null when they run (or, under CI, fail loudly).</summary>
    public static string? SkipReason => ExecutablePath is null && !IsCi ? MissingMessage + " Redis tests are skipped." : null;

    private static string? Find()
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        foreach (var directory in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(directory, "redis-server");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
