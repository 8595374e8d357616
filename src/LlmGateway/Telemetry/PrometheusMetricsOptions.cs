namespace LlmGateway.Telemetry;

/// <summary>Which meters the Prometheus endpoint exposes, and how many series an instrument may hold.</summary>
public sealed class PrometheusMetricsOptions
{
    /// <summary>Meters whose name starts with one of these (ordinal) are exposed.</summary>
    public IList<string> MeterPrefixes { get; } = ["LlmGateway"];

    /// <summary>ASP.NET Core's per-request meter (http_server_*).</summary>
    public const string HostingMeter = "Microsoft.AspNetCore.Hosting";

    /// <summary>HttpClient's per-request meter (http_client_*).</summary>
    public const string HttpClientMeter = "System.Net.Http";

    /// <summary>Meters whose name equals one of these (ordinal) are exposed.</summary>
    public IList<string> MeterNames { get; } =
    [
        HostingMeter,
        "Microsoft.AspNetCore.Server.Kestrel",
        "System.Runtime",
        HttpClientMeter,
    ];

    /// <summary>
    /// Upper bound on distinct tag sets per instrument; measurements for further tag sets are dropped
    /// and counted in <c>llm_gateway_metrics_dropped_series_total</c>.
    /// </summary>
    public int MaxSeriesPerInstrument { get; set; } = 2_000;
}
