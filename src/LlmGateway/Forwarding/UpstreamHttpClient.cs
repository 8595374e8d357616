using System.Diagnostics;
using System.Net;
using System.Net.Http;

namespace LlmGateway.Forwarding;

/// <summary>
/// The one connection pool to every provider. Configured as YARP's forwarder client is (no proxy, no
/// redirects, no decompression, no cookies) plus a connect timeout, and W3C trace context propagation.
/// </summary>
internal sealed class UpstreamHttpClient : IDisposable
{
    public UpstreamHttpClient()
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1),
            ActivityHeadersPropagator = DistributedContextPropagator.CreateDefaultPropagator(),
        };
        Invoker = new HttpMessageInvoker(handler, disposeHandler: true);
    }

    public HttpMessageInvoker Invoker { get; }

    public void Dispose() => Invoker.Dispose();
}
