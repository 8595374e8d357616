using System.Security.Cryptography;
using System.Text;
using LlmGateway.Configuration;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Telemetry;

/// <summary>
/// Who may read /metrics (it carries user names and spend). With Gateway:Metrics:Port, /metrics answers on that port
/// only, and that port answers nothing else (but /healthz and /readyz with Metrics:Probes): the gateway's public port
/// then has no /metrics at all. With Gateway:Metrics:Key, /metrics needs <c>Authorization: Bearer &lt;key&gt;</c>. The
/// port is told by the connection's local port, never by the Host header a caller chooses.
/// </summary>
internal sealed class MetricsAccess(RequestDelegate next, GatewayConfigProvider config, MetricsListener listener)
{
    public const string Path = "/metrics";

    public Task InvokeAsync(HttpContext context)
    {
        var isMetrics = context.Request.Path.Equals(Path, StringComparison.Ordinal);
        if (listener.Port > 0)
        {
            var onMetricsPort = context.Connection.LocalPort == listener.Port;
            var allowed = isMetrics
                ? onMetricsPort
                : !onMetricsPort || (listener.Probes && IsProbe(context.Request.Path));
            if (!allowed)
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return Task.CompletedTask;
            }
        }

        if (isMetrics && config.Current.Options.Metrics.Key is { Length: > 0 } key && !Authorized(context.Request, key))
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            context.Response.Headers.WWWAuthenticate = "Bearer realm=\"metrics\"";
            return Task.CompletedTask;
        }

        return next(context);
    }

    private static bool IsProbe(PathString path) =>
        path.Equals("/healthz", StringComparison.Ordinal) || path.Equals("/readyz", StringComparison.Ordinal);

    private static bool Authorized(HttpRequest request, string key)
    {
        var presented = request.Headers.Authorization.ToString();
        return presented.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented[7..].Trim())), SHA256.HashData(Encoding.UTF8.GetBytes(key)));
    }
}

/// <summary>The metrics listener fixed at start-up (Gateway:Metrics:Port and :Probes are read once, like the gateway's URLs).</summary>
internal sealed record MetricsListener(int Port, bool Probes)
{
    /// <summary>
    /// The gateway's URLs plus, with a metrics port, the same hosts on that port: <c>http://0.0.0.0:8080</c> with port
    /// 9464 adds <c>http://0.0.0.0:9464</c>, so /metrics is reachable where the gateway is, on a port kept internal.
    /// </summary>
    public static string WithMetricsUrls(string urls, int port)
    {
        if (port <= 0)
        {
            return urls;
        }

        var all = new List<string>();
        foreach (var url in urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            all.Add(url);
            var scheme = url.IndexOf("://", StringComparison.Ordinal);
            var hostStart = scheme < 0 ? 0 : scheme + 3;
            var portStart = url.LastIndexOf(':');
            var host = portStart > hostStart ? url[hostStart..portStart] : url[hostStart..].TrimEnd('/');
            var metricsUrl = $"http://{host}:{port}";
            if (!all.Contains(metricsUrl, StringComparer.OrdinalIgnoreCase))
            {
                all.Add(metricsUrl);
            }
        }

        return string.Join(';', all);
    }
}
