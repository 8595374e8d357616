using System.Diagnostics;
using System.Net;
using Yarp.ReverseProxy.Forwarder;

// Bare YARP: every request under /v1 and /stream is forwarded as-is to --upstream, through one
// SocketsHttpHandler configured as the gateway's UpstreamHttpClient is. No auth, no parsing, no accounting:
// what is left is the cost of Kestrel + YARP, the floor the gateway's overhead is measured from.
var builder = WebApplication.CreateBuilder(args);
var upstream = builder.Configuration["upstream"] ?? throw new InvalidOperationException("--upstream http://127.0.0.1:PORT is required");

// Same hosting choices as the gateway: no Kestrel body-size cap, logs only from Warning up.
builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = null);
builder.Logging.ClearProviders();
builder.Logging.AddConsole();
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Services.AddHttpForwarder();

var app = builder.Build();
var forwarder = app.Services.GetRequiredService<IHttpForwarder>();
var invoker = new HttpMessageInvoker(new SocketsHttpHandler
{
    UseProxy = false,
    AllowAutoRedirect = false,
    AutomaticDecompression = DecompressionMethods.None,
    UseCookies = false,
    EnableMultipleHttp2Connections = true,
    ConnectTimeout = TimeSpan.FromSeconds(10),
    PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
    ActivityHeadersPropagator = DistributedContextPropagator.CreateDefaultPropagator(),
}, disposeHandler: true);
var requestConfig = new ForwarderRequestConfig { ActivityTimeout = TimeSpan.FromHours(1), AllowResponseBuffering = false };

app.Map("/v1/{**rest}", context => Forward(context));
app.Map("/stream/{**rest}", context => Forward(context));
app.MapGet("/healthz", () => "ok");
app.Run();

async Task Forward(HttpContext context)
{
    var error = await forwarder.SendAsync(context, upstream, invoker, requestConfig, HttpTransformer.Default);
    if (error != ForwarderError.None && !context.Response.HasStarted)
    {
        context.Response.StatusCode = StatusCodes.Status502BadGateway;
    }
}
