using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace LlmGateway.Tests.Shared;

/// <summary>
/// A real three-master Redis Cluster on loopback: three <c>redis-server --cluster-enabled yes</c> on free ports, each in
/// a temporary directory of its own (its nodes.conf), joined by <c>redis-cli --cluster create … --cluster-replicas 0</c>,
/// ready once every node reports <c>cluster_state:ok</c>. Torn down (processes killed, directories deleted) on dispose.
/// A master can be stopped and started again on its port (it rejoins with its slots from its nodes.conf).
/// <see cref="RedisClusterWithReplicasFixture"/> gives every master a replica.
/// </summary>
public class RedisClusterFixture : IDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
    private readonly string _root;
    private readonly Process?[] _nodes;
    private readonly int _replicasPerMaster;

    public RedisClusterFixture()
        : this(replicasPerMaster: 0)
    {
    }

    /// <param name="replicasPerMaster">Replicas of each of the three masters: the cluster has 3 × (1 + this) nodes.</param>
    protected RedisClusterFixture(int replicasPerMaster)
    {
        _replicasPerMaster = replicasPerMaster;
        _nodes = new Process?[3 * (1 + replicasPerMaster)];
        if (RedisServer.ExecutablePath is null)
        {
            if (RedisServer.IsCi)
            {
                throw new InvalidOperationException(RedisServer.MissingMessage + " CI is set, so the Redis tests fail instead of skipping.");
            }

            Ports = [];
            _root = string.Empty;
            return;
        }

        _root = Path.Combine(Path.GetTempPath(), "llmgw-cluster-" + Guid.NewGuid().ToString("N")[..8]);
        Ports = _nodes.Select(_ => FreePort()).ToArray();
        try
        {
            for (var i = 0; i < Ports.Length; i++)
            {
                StartNode(i);
            }

            var create = new List<string> { "--cluster", "create" };
            create.AddRange(Ports.Select(port => "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture)));
            create.AddRange(["--cluster-replicas", replicasPerMaster.ToString(CultureInfo.InvariantCulture), "--cluster-yes"]);
            var (exitCode, output) = Run(RedisCli, create);
            if (exitCode != 0)
            {
                throw new InvalidOperationException($"redis-cli --cluster create failed ({exitCode}): {output}");
            }

            WaitUntilOk();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>Replicas of each master when the cluster was created.</summary>
    public int ReplicasPerMaster => _replicasPerMaster;

    /// <summary>Every node's port (masters and replicas: which is which can change with a fail-over; see <see cref="OwnerOf"/>).</summary>
    public int[] Ports { get; }

    /// <summary>Every node, as a connection string lists them.</summary>
    public string ConnectionString => string.Join(",", Ports.Select(port => "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture)));

    /// <summary>One node only: the client discovers the others (a managed cluster's single configuration endpoint).</summary>
    public string SingleNodeConnectionString => "127.0.0.1:" + Ports[0].ToString(CultureInfo.InvariantCulture);

    private static string RedisCli => Path.Combine(Path.GetDirectoryName(RedisServer.ExecutablePath!)!, "redis-cli");

    /// <summary>Stops master <paramref name="index"/> (kill -9): the slots it owns go dark until it is started again.</summary>
    public void StopNode(int index)
    {
        var process = _nodes[index];
        _nodes[index] = null;
        if (process is null)
        {
            return;
        }

        if (!process.HasExited)
        {
            process.Kill(entireProcessTree: true);
        }

        process.WaitForExit(5000);
        process.Dispose();
    }

    /// <summary>Starts node <paramref name="index"/> again on its port and waits until the cluster is ok (and, with replicas, every replica in sync).</summary>
    /// <param name="arguments">More redis-server arguments, after (and so overriding) the fixture's: e.g. <c>--appendonly yes</c> to load what the node wrote to its AOF before it was killed.</param>
    public void RestartNode(int index, params string[] arguments)
    {
        StartNode(index, arguments);
        WaitUntilOk();
    }

    /// <summary>One command on one node (RESP inline), its first reply line; null if the node does not answer.</summary>
    public string? TryCommand(int index, string command)
    {
        try
        {
            using var client = new TcpClient();
            client.SendTimeout = client.ReceiveTimeout = 2000;
            client.Connect(IPAddress.Loopback, Ports[index]);
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

    /// <summary>The same command on every master (e.g. SCRIPT FLUSH); the replies in node order.</summary>
    public string?[] OnEveryNode(string command) => Ports.Select((_, i) => TryCommand(i, command)).ToArray();

    public void Dispose()
    {
        for (var i = 0; i < _nodes.Length; i++)
        {
            try
            {
                StopNode(i);
            }
            catch (InvalidOperationException)
            {
            }
        }

        if (_root.Length > 0 && Directory.Exists(_root))
        {
            try
            {
                Directory.Delete(_root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private void StartNode(int index, params string[] arguments)
    {
        var port = Ports[index].ToString(CultureInfo.InvariantCulture);
        var directory = Path.Combine(_root, port);
        Directory.CreateDirectory(directory);
        var info = new ProcessStartInfo(RedisServer.ExecutablePath!)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = directory,
        };
        foreach (var argument in new[]
        {
            "--port", port, "--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", Path.Combine(directory, "nodes.conf"),
            "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", "--dir", directory,
        })
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        var process = Process.Start(info) ?? throw new InvalidOperationException("redis-server did not start");
        process.OutputDataReceived += static (_, _) => { };
        process.ErrorDataReceived += static (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _nodes[index] = process;
        var clock = Stopwatch.StartNew();
        while (TryCommand(index, "PING") is not { } reply || !reply.StartsWith("+PONG", StringComparison.Ordinal))
        {
            if (clock.Elapsed > StartTimeout || process.HasExited)
            {
                throw new InvalidOperationException($"cluster node on port {port} did not answer PING");
            }

            Thread.Sleep(20);
        }
    }

    private void WaitUntilOk()
    {
        var clock = Stopwatch.StartNew();
        while (!Ports.Select((_, i) => TryCommand(i, "CLUSTER INFO")).All(info => info is not null && info.Contains("cluster_state:ok", StringComparison.Ordinal))
            || !ReplicasInSync())
        {
            if (clock.Elapsed > StartTimeout)
            {
                throw new InvalidOperationException("the Redis Cluster did not reach cluster_state:ok with every replica in sync within " + StartTimeout.TotalSeconds + " s");
            }

            Thread.Sleep(50);
        }
    }

    /// <summary>Every replica's link to its master is up, and every master has its replicas.</summary>
    private bool ReplicasInSync()
    {
        if (_replicasPerMaster == 0)
        {
            return true;
        }

        foreach (var info in Ports.Select((_, i) => TryCommand(i, "INFO replication")))
        {
            if (info is null
                || (info.Contains("role:slave", StringComparison.Ordinal) && !info.Contains("master_link_status:up", StringComparison.Ordinal))
                || (info.Contains("role:master", StringComparison.Ordinal) && !info.Contains("connected_slaves:" + _replicasPerMaster.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The hash slot of <paramref name="key"/> (CLUSTER KEYSLOT on the first node that answers).</summary>
    public int Slot(string key)
    {
        var reply = Ports.Select((_, i) => TryCommand(i, "CLUSTER KEYSLOT " + key)).FirstOrDefault(r => r is not null)
            ?? throw new InvalidOperationException("CLUSTER KEYSLOT did not answer");
        return int.Parse(reply.TrimStart(':').Trim(), CultureInfo.InvariantCulture);
    }

    /// <summary>The index of the master serving <paramref name="slot"/> now, from CLUSTER NODES as node <paramref name="askIndex"/> sees it.</summary>
    public int OwnerOf(int slot, int askIndex = 0)
    {
        var nodes = TryCommand(askIndex, "CLUSTER NODES") ?? throw new InvalidOperationException("CLUSTER NODES did not answer");
        foreach (var line in nodes.Split('\n'))
        {
            var fields = line.Trim().Split(' ');
            if (fields.Length < 9 || !fields[2].Contains("master", StringComparison.Ordinal) || fields[2].Contains("fail", StringComparison.Ordinal))
            {
                continue;
            }

            var port = int.Parse(fields[1].Split('@')[0].Split(':')[1], CultureInfo.InvariantCulture);
            foreach (var range in fields.Skip(8))
            {
                var bounds = range.Split('-');
                var low = int.Parse(bounds[0], CultureInfo.InvariantCulture);
                var high = bounds.Length > 1 ? int.Parse(bounds[1], CultureInfo.InvariantCulture) : low;
                if (slot >= low && slot <= high)
                {
                    return Array.IndexOf(Ports, port);
                }
            }
        }

        throw new InvalidOperationException($"no master serves slot {slot}: {nodes}");
    }

    private static (int ExitCode, string Output) Run(string executable, IEnumerable<string> arguments)
    {
        var info = new ProcessStartInfo(executable) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        using var process = Process.Start(info) ?? throw new InvalidOperationException(executable + " did not start");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(30_000))
        {
            process.Kill();
            return (-1, "timed out");
        }

        return (process.ExitCode, output.Result + error.Result);
    }

    /// <summary>A port free on loopback whose cluster bus port (port + 10000) is free too: ephemeral ports (32768+) would put it past 65535.</summary>
    private static int FreePort()
    {
        for (var attempt = 0; attempt < 200; attempt++)
        {
            var port = Random.Shared.Next(20_000, 30_000);
            if (IsFree(port) && IsFree(port + 10_000))
            {
                return port;
            }
        }

        throw new InvalidOperationException("no free port pair for a cluster node");

        static bool IsFree(int port)
        {
            try
            {
                var listener = new TcpListener(IPAddress.Loopback, port);
                listener.Start();
                listener.Stop();
                return true;
            }
            catch (SocketException)
            {
                return false;
            }
        }
    }
}

/// <summary>The three-master cluster with one replica per master (six nodes): fail-overs promote a replica.</summary>
public sealed class RedisClusterWithReplicasFixture() : RedisClusterFixture(replicasPerMaster: 1);

/// <summary>The three-master cluster with two replicas per master (nine nodes): after a fail-over the new master still has one.</summary>
public sealed class RedisClusterWithTwoReplicasFixture() : RedisClusterFixture(replicasPerMaster: 2);
