using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>
/// The gateway as a separate OS process (<c>dotnet LlmGateway.dll --config ... --urls ...</c>), for tests
/// where replicas must share nothing but Redis.
/// </summary>
public sealed partial class GatewayProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _directory;
    private readonly StringBuilder _output = new();

    private readonly TaskCompletionSource<string> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private GatewayProcess(Process process, string directory)
    {
        _process = process;
        _directory = directory;
    }

    public string BaseUrl { get; private set; } = string.Empty;

    public HttpClient Client { get; private set; } = null!;

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

    /// <param name="environment">Variables set after the defaults (e.g. a log level a test reads records at).</param>
    public static async Task<GatewayProcess> StartAsync(string configJson, IReadOnlyDictionary<string, string>? environment = null)
    {
        var directory = Directory.CreateTempSubdirectory("llmgw-proc-").FullName;
        var configPath = Path.Combine(directory, "gateway.json");
        await File.WriteAllTextAsync(configPath, configJson);
        var dll = Path.Combine(AppContext.BaseDirectory, "LlmGateway.dll");
        // Port 0: the process binds a port of its own and announces it ("Now listening on: ..."). A port chosen here and
        // released before the process binds it could be taken by another test's server in between, whose /readyz would
        // then answer for this process.
        var start = new ProcessStartInfo("dotnet", [dll, "--config", configPath, "--urls", "http://127.0.0.1:0"])
        {
            WorkingDirectory = directory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["Logging__LogLevel__Default"] = "Warning";
        start.Environment["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Information";
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start the gateway process");
        var gateway = new GatewayProcess(process, directory);
        process.OutputDataReceived += (_, e) => gateway.Append(e.Data);
        process.ErrorDataReceived += (_, e) => gateway.Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!gateway._listening.Task.IsCompleted)
        {
            if (process.HasExited || DateTime.UtcNow > deadline)
            {
                var why = process.HasExited ? $"exited with {process.ExitCode}" : "did not announce its address within 30 s";
                await gateway.DisposeAsync();
                throw new InvalidOperationException($"the gateway process {why}: {gateway.Output}");
            }

            await Task.Delay(50);
        }

        gateway.BaseUrl = await gateway._listening.Task;
        gateway.Client = new HttpClient { BaseAddress = new Uri(gateway.BaseUrl), Timeout = TimeSpan.FromSeconds(30) };
        while (true)
        {
            if (process.HasExited)
            {
                throw new InvalidOperationException($"the gateway process exited with {process.ExitCode}: {gateway.Output}");
            }

            try
            {
                using var ready = await gateway.Client.GetAsync("/readyz");
                if (ready.IsSuccessStatusCode)
                {
                    return gateway;
                }
            }
            catch (HttpRequestException)
            {
            }

            if (DateTime.UtcNow > deadline)
            {
                await gateway.DisposeAsync();
                throw new TimeoutException("the gateway process did not become ready: " + gateway.Output);
            }

            await Task.Delay(100);
        }
    }

    /// <summary>
    /// Runs <c>dotnet LlmGateway.dll</c> with <paramref name="args"/> (<c>{config}</c> in one is replaced by the path of a
    /// file holding <paramref name="configJson"/>) until it exits by itself, at most 60 s; returns its exit code and output.
    /// </summary>
    public static async Task<(int ExitCode, string Output)> RunToExitAsync(string configJson, params string[] args)
    {
        var directory = Directory.CreateTempSubdirectory("llmgw-proc-").FullName;
        try
        {
            var configPath = Path.Combine(directory, "gateway.json");
            await File.WriteAllTextAsync(configPath, configJson);
            var dll = Path.Combine(AppContext.BaseDirectory, "LlmGateway.dll");
            var start = new ProcessStartInfo("dotnet", [dll, .. args.Select(a => a.Replace("{config}", configPath, StringComparison.Ordinal))])
            {
                WorkingDirectory = directory,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start the gateway process");
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw new TimeoutException("the gateway process did not exit within 60 s: " + await stdout + await stderr);
            }

            return (process.ExitCode, await stdout + await stderr);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    public async ValueTask DisposeAsync()
    {
        Client?.Dispose();
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
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
            _output.AppendLine(line);
        }

        if (!_listening.Task.IsCompleted && ListeningOn().Match(line) is { Success: true } match)
        {
            _listening.TrySetResult(match.Groups[1].Value);
        }
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"Now listening on: (http://127\.0\.0\.1:[0-9]+)")]
    private static partial System.Text.RegularExpressions.Regex ListeningOn();
}
