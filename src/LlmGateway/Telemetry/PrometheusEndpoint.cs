namespace LlmGateway.Telemetry;

/// <summary>Serves a Prometheus scrape of the collector.</summary>
internal static class PrometheusEndpoint
{
    public static Task WriteAsync(HttpContext context, PrometheusMetricsCollector collector)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(collector);

        var response = context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = PrometheusTextSerializer.ContentType;
        response.Headers.CacheControl = "no-store";

        // Serialization is synchronous (it runs under the scrape lock); the body is sent on flush.
        collector.WriteTo(response.BodyWriter);
        return response.BodyWriter.FlushAsync(context.RequestAborted).AsTask();
    }
}
