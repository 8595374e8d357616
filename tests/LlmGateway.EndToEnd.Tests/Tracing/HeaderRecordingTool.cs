using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LlmGateway.EndToEnd.Tests.Tracing;

/// <summary>A tool API on a real Kestrel socket at 127.0.0.1 that answers 200 and keeps the traceparent of each request.</summary>
internal sealed class HeaderRecordingTool : IAsyncDisposable
{
    private readonly WebApplication _app;

    private HeaderRecordingTool(WebApplication app, string baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
    }

    public string BaseUrl { get; }

    /// <summary>(path, traceparent) of every request, in arrival order.</summary>
    public ConcurrentQueue<(string Path, string TraceParent)> Requests { get; } = new();

    public static async Task<HeaderRecordingTool> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        HeaderRecordingTool? tool = null;
        app.Run(async context =>
        {
            tool!.Requests.Enqueue((context.Request.Path.Value ?? "", context.Request.Headers.TraceParent.ToString()));
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync("""{"ok":true}""");
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        tool = new HeaderRecordingTool(app, address.TrimEnd('/'));
        return tool;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
