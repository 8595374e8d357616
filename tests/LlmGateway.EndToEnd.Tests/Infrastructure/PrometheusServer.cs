using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>
/// A real Prometheus (Debian package <c>prometheus</c>) on a free 127.0.0.1 port, with a temporary config scraping
/// one target's /metrics every second and a temporary TSDB directory; killed and cleaned up on dispose.
/// </summary>
public sealed class PrometheusServer : IAsyncDisposable
{
    public const string MissingMessage = "prometheus was not found on PATH (install the Debian package prometheus, as .ci/run does).";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(20);
    private static readonly Lazy<string?> Executable = new(Find);

    private readonly Process _process;
    private readonly string _directory;
    private readonly StringBuilder _output;

    private PrometheusServer(Process process, string directory, StringBuilder output, int port)
    {
        _process = process;
        _directory = directory;
        _output = output;
        BaseUrl = $"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}";
        Client = new HttpClient { BaseAddress = new Uri(BaseUrl), Timeout = TimeSpan.FromSeconds(10) };
    }

    /// <summary>Full path of the prometheus binary, or null.</summary>
    public static string? ExecutablePath => Executable.Value;

    public static bool IsCi => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"));

    /// <summary>Why Prometheus tests are skipped here; null when they run (or, under CI, fail loudly).</summary>
    public static string? SkipReason => ExecutablePath is null && !IsCi ? MissingMessage + " Prometheus tests are skipped (set CI to make this a failure)." : null;

    public string BaseUrl { get; }

    public HttpClient Client { get; }

    /// <summary>What Prometheus printed so far (for failure messages).</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>
    /// Starts Prometheus scraping <paramref name="target"/> (host:port) at /metrics every second under
    /// <paramref name="job"/>, loading <paramref name="ruleFiles"/>, and waits until it is ready.
    /// </summary>
    public static async Task<PrometheusServer> StartAsync(string target, string job, params string[] ruleFiles)
    {
        var executable = ExecutablePath ?? throw new InvalidOperationException(MissingMessage + " CI is set, so this test fails instead of skipping.");
        var directory = Directory.CreateTempSubdirectory("llmgw-prometheus-").FullName;
        var config = new StringBuilder()
            .Append("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n");
        if (ruleFiles.Length > 0)
        {
            config.Append("rule_files:\n");
            foreach (var file in ruleFiles)
            {
                config.Append("  - ").Append(JsonSerializer.Serialize(file)).Append('\n');
            }
        }

        config.Append("scrape_configs:\n")
            .Append("  - job_name: ").Append(JsonSerializer.Serialize(job)).Append('\n')
            .Append("    metrics_path: /metrics\n")
            .Append("    static_configs:\n")
            .Append("      - targets: [").Append(JsonSerializer.Serialize(target)).Append("]\n");
        var configPath = Path.Combine(directory, "prometheus.yml");
        await File.WriteAllTextAsync(configPath, config.ToString());

        // The port is free when chosen; should another process take it first, Prometheus exits and we try again.
        Exception? last = null;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var port = FreePort();
            var output = new StringBuilder();
            var info = new ProcessStartInfo(executable)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                WorkingDirectory = directory,
            };
            foreach (var argument in new[]
            {
                "--config.file=" + configPath,
                "--storage.tsdb.path=" + Path.Combine(directory, "data"),
                "--web.listen-address=127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture),
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
            })
            {
                info.ArgumentList.Add(argument);
            }

            var process = new Process { StartInfo = info };
            process.OutputDataReceived += (_, e) => Append(output, e.Data);
            process.ErrorDataReceived += (_, e) => Append(output, e.Data);
            process.Start();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            var server = new PrometheusServer(process, directory, output, port);
            try
            {
                await server.WaitUntilReadyAsync();
                return server;
            }
            catch (Exception ex)
            {
                last = ex;
                server.Kill();
                server.Client.Dispose();
            }
        }

        TryDelete(directory);
        throw new InvalidOperationException("Prometheus did not start", last);
    }

    /// <summary>Evaluates an instant query at the current time; throws with Prometheus's error when it fails.</summary>
    /// <returns>The <c>data</c> object: <c>resultType</c> and <c>result</c>.</returns>
    public async Task<JsonElement> QueryAsync(string promql)
    {
        using var content = new FormUrlEncodedContent([new KeyValuePair<string, string>("query", promql)]);
        using var response = await Client.PostAsync("/api/v1/query", content);
        var text = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(text);
        var root = document.RootElement;
        if (root.GetProperty("status").GetString() != "success")
        {
            throw new PromQLException(promql, root.TryGetProperty("error", out var error) ? error.GetString() ?? text : text);
        }

        return root.GetProperty("data").Clone();
    }

    /// <summary>The single value of a query that returns one sample (or a scalar); null when it returns nothing.</summary>
    public async Task<double?> QueryScalarAsync(string promql)
    {
        var data = await QueryAsync(promql);
        var result = data.GetProperty("result");
        var sample = data.GetProperty("resultType").GetString() switch
        {
            "scalar" => result,
            "vector" when result.GetArrayLength() == 1 => result[0].GetProperty("value"),
            "vector" when result.GetArrayLength() == 0 => (JsonElement?)null,
            var type => throw new InvalidOperationException($"'{promql}' returned {type} with {result.GetRawText()}, not one sample"),
        };
        return sample is { } value ? ParseValue(value[1].GetString()!) : null;
    }

    /// <summary>Prometheus's string form of a sample value (including NaN and ±Inf).</summary>
    public static double ParseValue(string value) => value switch
    {
        "NaN" => double.NaN,
        "+Inf" => double.PositiveInfinity,
        "-Inf" => double.NegativeInfinity,
        _ => double.Parse(value, NumberStyles.Float, CultureInfo.InvariantCulture),
    };

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        Kill();
        await Task.Run(() => TryDelete(_directory));
    }

    private async Task WaitUntilReadyAsync()
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < StartTimeout)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"prometheus exited with {_process.ExitCode}: {Output}");
            }

            try
            {
                using var response = await Client.GetAsync("/-/ready");
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"prometheus was not ready at {BaseUrl} within {StartTimeout.TotalSeconds:0} s. Its output: {Output}");
    }

    private void Kill()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }

            _process.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
        }
        finally
        {
            _process.Dispose();
        }
    }

    private static void TryDelete(string directory)
    {
        try
        {
            Directory.Delete(directory, recursive: true);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            if (output.Length < 16_384)
            {
                output.AppendLine(line);
            }
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

    private static string? Find()
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        foreach (var directory in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries).Append("/usr/bin"))
        {
            var candidate = Path.Combine(directory, "prometheus");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}

/// <summary>Prometheus refused to evaluate an expression.</summary>
public sealed class PromQLException(string query, string error) : Exception($"Prometheus could not evaluate '{query}': {error}")
{
    public string Query { get; } = query;
}

/// <summary>A fact that needs a real Prometheus: skipped, saying why, where none is installed (fails under CI).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PrometheusFactAttribute : FactAttribute
{
    public PrometheusFactAttribute()
    {
        if (PrometheusServer.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}
