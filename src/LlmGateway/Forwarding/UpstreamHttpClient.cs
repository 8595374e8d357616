using System.Net;
using System.Net.Http;

namespace LlmGateway.Forwarding;

/// <summary>
/// The one connection pool to every provider. Configured as YARP's forwarder client is (no proxy, no
/// redirects, no decompression, no cookies) plus a connect timeout. Trace context is
/// written by the transformers (UpstreamTraceContext), not by HttpClient.
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
            // The gateway writes traceparent itself (Tracing/UpstreamTraceContext): the attempt span's, not HttpClient's own activity's.
            ActivityHeadersPropagator = null,
        };
        Invoker = new HttpMessageInvoker(handler, disposeHandler: true);
    }

    public HttpMessageInvoker Invoker { get; }

    public void Dispose() => Invoker.Dispose();
}
