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
/// A tool API on a real Kestrel socket at 127.0.0.1 that leaves requests unanswered until the caller gives up:
/// every request without an Idempotency-Key, and the first of each key; a later request with a key it has held is
/// answered 200 at once. Requests are recorded as they arrive.
/// </summary>
/// <remarks>
/// What WireMock.Net 1.25 cannot stand in for: it logs a request only once its response is made (after any delay),
/// so a call still held is invisible; a delayed answer moves a scenario on only after the delay, so a retry cannot be
/// answered while the first attempt still hangs; and its delays run on when the caller has gone.
/// </remarks>
internal sealed class StallingTool : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentQueue<ToolRequest> _requests = new();
    private readonly ConcurrentDictionary<string, bool> _heldKeys = new(StringComparer.Ordinal);

    private StallingTool(WebApplication app) => _app = app;

    /// <summary>http://127.0.0.1:port (no trailing slash).</summary>
    public string BaseUrl { get; private set; } = "";

    /// <summary>Every request that arrived, answered or not, in order of arrival.</summary>
    public IReadOnlyList<ToolRequest> Requests => _requests.ToArray();

    public int CountFor(string pathPrefix) => Requests.Count(r => r.Path.StartsWith(pathPrefix, StringComparison.Ordinal));

    public static async Task<StallingTool> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        var tool = new StallingTool(app);
        app.Run(tool.HandleAsync);
        await app.StartAsync();
        tool.BaseUrl = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First().TrimEnd('/');
        return tool;
    }

    private async Task HandleAsync(HttpContext context)
    {
        // The caller going away (the gateway's attempt timing out) or the server stopping ends the wait.
        using var held = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _app.Lifetime.ApplicationStopping);
        try
        {
            var request = context.Request;
            using var reader = new StreamReader(request.Body);
            var body = await reader.ReadToEndAsync(held.Token);
            var headers = request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase);
            _requests.Enqueue(new ToolRequest(request.Method, request.Path.Value + request.QueryString.Value, headers, body));

            var key = request.Headers["Idempotency-Key"].ToString();
            if (key.Length > 0 && !_heldKeys.TryAdd(key, true))
            {
                await context.Response.WriteAsJsonAsync(new { key }, held.Token);
                return;
            }

            await Task.Delay(Timeout.InfiniteTimeSpan, held.Token);
        }
        catch (OperationCanceledException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
