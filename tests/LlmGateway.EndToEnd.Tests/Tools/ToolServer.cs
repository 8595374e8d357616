using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// A tiny tool API on a real Kestrel socket at 127.0.0.1: it answers every path with a JSON body naming the call's
/// sequence number, records each request (method, path, headers, body), and misbehaves on request headers:
/// <c>X-Tool-Delay-Ms</c> (answer late; cut short when the gateway gives up), <c>X-Tool-Status</c>,
/// <c>X-Tool-Fail-Times</c> (answer X-Tool-Status that many times per <c>X-Tool-Scenario</c>, then 200) and
/// <c>X-Tool-Hang-First</c> (hang on the first request of an Idempotency-Key). Effects: each request is one effect,
/// except a repeat of an Idempotency-Key already applied, as an idempotent API would do.
/// </summary>
public sealed class ToolServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<ToolRequest> _requests = new();
    private readonly ConcurrentDictionary<string, int> _seenKeys = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _failures = new(StringComparer.Ordinal);
    private int _sequence;
    private int _effects;

    private ToolServer(WebApplication app) => _app = app;

    public string BaseUrl { get; private set; } = "";

    public IReadOnlyList<ToolRequest> Requests => _requests.ToArray();

    /// <summary>Side effects applied: at most one per Idempotency-Key.</summary>
    public int Effects => Volatile.Read(ref _effects);

    public int CountFor(string pathPrefix) => Requests.Count(r => r.Path.StartsWith(pathPrefix, StringComparison.Ordinal));

    public static async Task<ToolServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var server = new ToolServer(app);
        app.Run(server.HandleAsync);
        await app.StartAsync();
        server.BaseUrl = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First().TrimEnd('/');
        return server;
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        using var reader = new StreamReader(request.Body);
        var body = await reader.ReadToEndAsync();
        var headers = request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase);
        var sequence = Interlocked.Increment(ref _sequence);
        _requests.Enqueue(new ToolRequest(request.Method, request.Path.Value + request.QueryString.Value, headers, body));

        headers.TryGetValue("Idempotency-Key", out var key);
        var firstOfKey = key is null || _seenKeys.AddOrUpdate(key, 1, (_, n) => n + 1) == 1;
        if (firstOfKey)
        {
            Interlocked.Increment(ref _effects);
        }

        try
        {
            if (headers.ContainsKey("X-Tool-Hang-First") && key is not null && firstOfKey)
            {
                await Task.Delay(TimeSpan.FromSeconds(30), context.RequestAborted);
            }

            if (headers.TryGetValue("X-Tool-Delay-Ms", out var delay))
            {
                await Task.Delay(int.Parse(delay, System.Globalization.CultureInfo.InvariantCulture), context.RequestAborted);
            }
        }
        catch (OperationCanceledException)
        {
            return;
        }

        var status = 200;
        if (headers.TryGetValue("X-Tool-Status", out var configured))
        {
            var failStatus = int.Parse(configured, System.Globalization.CultureInfo.InvariantCulture);
            if (headers.TryGetValue("X-Tool-Fail-Times", out var times))
            {
                var scenario = headers.GetValueOrDefault("X-Tool-Scenario", "default");
                if (_failures.AddOrUpdate(scenario, 1, (_, n) => n + 1) <= int.Parse(times, System.Globalization.CultureInfo.InvariantCulture))
                {
                    status = failStatus;
                }
            }
            else
            {
                status = failStatus;
            }
        }

        context.Response.StatusCode = status;
        context.Response.Headers["X-Tool-Sequence"] = sequence.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await context.Response.WriteAsJsonAsync(new { call = sequence, method = request.Method, path = request.Path.Value });
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>One request as the tool received it.</summary>
public sealed record ToolRequest(string Method, string Path, IReadOnlyDictionary<string, string> Headers, string Body);
