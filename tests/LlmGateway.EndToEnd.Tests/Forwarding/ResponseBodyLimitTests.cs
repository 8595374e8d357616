using System.Net;
using System.Text;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace LlmGateway.EndToEnd.Tests.Forwarding;

/// <summary>
/// Gateway:Limits:MaxResponseBodyBytes is exact for answers without a Content-Length (chunked): a body of the limit is
/// served, one byte more is refused, however the pooled buffers are sized.
/// </summary>
public sealed class ResponseBodyLimitTests : IAsyncLifetime
{
    private const int Limit = 1000;
    private WebApplication _upstream = null!;
    private string _upstreamUrl = null!;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        _upstream = builder.Build();

        // A chat completion padded with spaces to the asked size, written in pieces with no Content-Length (chunked).
        _upstream.MapPost("/v1/chat/completions", async (HttpContext context) =>
        {
            var size = int.Parse(context.Request.Headers["X-Size"]!, System.Globalization.CultureInfo.InvariantCulture);
            const string json = """{"id":"c1","object":"chat.completion","model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}""";
            var body = Encoding.ASCII.GetBytes(json + new string(' ', size - json.Length));
            context.Response.ContentType = "application/json";
            for (var offset = 0; offset < body.Length; offset += 100)
            {
                await context.Response.Body.WriteAsync(body.AsMemory(offset, Math.Min(100, body.Length - offset)));
                await context.Response.Body.FlushAsync();
            }
        });
        await _upstream.StartAsync();
        _upstreamUrl = _upstream.Services.GetRequiredService<IServer>().Features.GetRequiredFeature<IServerAddressesFeature>().Addresses.First().TrimEnd('/');
    }

    public async Task DisposeAsync() => await _upstream.DisposeAsync();

    [Theory]
    [InlineData(Limit, HttpStatusCode.OK)]
    [InlineData(Limit + 1, HttpStatusCode.BadGateway)]
    [InlineData(Limit + 700, HttpStatusCode.BadGateway)]
    public async Task ChunkedAnswer_OfTheLimit_IsServed_OneByteMore_IsRefused(int size, HttpStatusCode expected)
    {
        await using var gateway = await GatewayServer.StartAsync($$"""
        {
          "Gateway": {
            "Providers": { "up": { "BaseUrl": "{{_upstreamUrl}}/v1" } },
            "Models": { "m": { "Provider": "up", "InputUsdPerMTok": 1, "OutputUsdPerMTok": 1 } },
            "Keys": [ { "Key": "{{TestConfigs.Key}}", "User": "u" } ],
            "Limits": { "MaxResponseBodyBytes": {{Limit}} },
            "Resilience": { "MaxAttempts": 1 }
          }
        }
        """);

        using var response = await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "m"), TestConfigs.Key, ("X-Size", size.ToString(System.Globalization.CultureInfo.InvariantCulture))));

        Assert.Equal(expected, response.StatusCode);
        if (expected == HttpStatusCode.OK)
        {
            Assert.Equal(size, (await response.Content.ReadAsByteArrayAsync()).Length);
        }
        else
        {
            await Http.AssertErrorAsync(response, 502, "upstream_error", shouldRetry: true);
            Assert.Contains("MaxResponseBodyBytes", (await Http.ErrorOf(response)).GetProperty("message").GetString());
        }
    }
}
