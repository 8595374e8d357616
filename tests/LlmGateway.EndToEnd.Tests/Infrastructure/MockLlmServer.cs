using LlmGateway.MockLlm;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>The bundled mock provider on a real Kestrel socket at 127.0.0.1 on a free port.</summary>
public sealed class MockLlmServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private MockLlmServer(WebApplication app, string baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
        Log = app.Services.GetRequiredService<MockRequestLog>();
    }

    /// <summary>http://127.0.0.1:port (no trailing slash); the OpenAI API is under /v1.</summary>
    public string BaseUrl { get; }

    public MockRequestLog Log { get; }

    public static async Task<MockLlmServer> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { EnvironmentName = "Testing" });
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddMockLlm();
        var app = builder.Build();
        app.MapMockLlm();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First();
        return new MockLlmServer(app, address.TrimEnd('/'));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
