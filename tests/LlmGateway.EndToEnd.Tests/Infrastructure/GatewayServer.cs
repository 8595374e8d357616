using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>
/// The gateway, built exactly as Program.cs builds it, on a real Kestrel socket at 127.0.0.1 on a free port,
/// with its config in a temporary file that tests may rewrite (polled every 100 ms) and its logs captured.
/// </summary>
public sealed class GatewayServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly string _directory;

    private GatewayServer(WebApplication app, string baseUrl, string configPath, string directory, FakeLogCollector logs)
    {
        _app = app;
        BaseUrl = baseUrl;
        ConfigPath = configPath;
        _directory = directory;
        Logs = logs;
        Client = new HttpClient { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromSeconds(30) };
    }

    public string BaseUrl { get; }

    public string ConfigPath { get; }

    /// <summary>Every record the gateway logged at Information or above (the logging default), in order.</summary>
    public FakeLogCollector Logs { get; }

    /// <summary>A plain HTTP client with the gateway as base address.</summary>
    public HttpClient Client { get; }

    public IServiceProvider Services => _app.Services;

    /// <param name="timeProvider">A clock for the gateway (e.g. a FakeTimeProvider); the system clock when null.</param>
    /// <param name="services">Registrations made before the gateway's own (which use TryAdd): replaces a piece, e.g. with one that fails.</param>
    public static async Task<GatewayServer> StartAsync(string configJson, TimeProvider? timeProvider = null, Action<IServiceCollection>? services = null)
    {
        var directory = Directory.CreateTempSubdirectory("llmgw-test-").FullName;
        var configPath = Path.Combine(directory, "gateway.json");
        await File.WriteAllTextAsync(configPath, configJson);

        var builder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = ["--config", configPath, "--urls", "http://127.0.0.1:0", "--LLMGATEWAY_CONFIG_POLL_MS", "100"],
            EnvironmentName = "Testing",
            ContentRootPath = directory,
        });
        if (timeProvider is not null)
        {
            // Registered first: AddLlmGateway only adds the system clock when none is registered.
            builder.Services.AddSingleton(timeProvider);
        }

        services?.Invoke(builder.Services);
        builder.AddLlmGateway();
        builder.Logging.AddFakeLogging();
        var app = builder.Build();
        app.MapLlmGateway();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        return new GatewayServer(app, address.TrimEnd('/'), configPath, directory, app.Services.GetFakeLogCollector());
    }

    /// <summary>Waits until /readyz answers 200 (its store connected), as a load balancer would before sending traffic.</summary>
    public Task WaitReadyAsync() => Http.EventuallyAsync(async () =>
    {
        using var response = await Client.GetAsync("/readyz");
        return response.IsSuccessStatusCode ? (bool?)true : null;
    }, "readiness", timeoutMs: 10000);

    /// <summary>Writes a new config file; the gateway picks it up on its next poll.</summary>
    public async Task WriteConfigAsync(string configJson)
    {
        // Write then rename, as editors do, so the gateway never reads a half-written file.
        var temp = ConfigPath + ".tmp";
        await File.WriteAllTextAsync(temp, configJson);
        File.Move(temp, ConfigPath, overwrite: true);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
