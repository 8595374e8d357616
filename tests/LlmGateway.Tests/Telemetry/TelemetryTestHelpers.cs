using System.Globalization;
using System.Text;
using LlmGateway.Telemetry;
using Prometheus;

namespace LlmGateway.Tests.Telemetry;

internal static class TelemetryTestHelpers
{
    /// <summary>A meter name no default collector listens to, so parallel tests do not see each other.</summary>
    public static string UniqueMeterName() => "Tests.Telemetry." + Guid.NewGuid().ToString("N");

    public static MeterBridge CreateBridge(string meterName, int maxSeries = 2_000)
    {
        var options = new PrometheusMetricsOptions { MaxSeriesPerInstrument = maxSeries };
        options.MeterPrefixes.Clear();
        options.MeterNames.Clear();
        options.MeterNames.Add(meterName);
        return new MeterBridge(options);
    }

    /// <summary>A scrape of the registry in the Prometheus text format, as /metrics serves it by default.</summary>
    public static string Scrape(MeterBridge bridge) => Scrape(bridge.Registry);

    public static string Scrape(CollectorRegistry registry, ExpositionFormat format = ExpositionFormat.PrometheusText)
    {
        using var buffer = new MemoryStream();
        registry.CollectAndExportAsTextAsync(buffer, format).GetAwaiter().GetResult();
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    /// <summary>The value of the sample whose name and labels are exactly <paramref name="series"/>, or null.</summary>
    public static double? SampleValue(string scrape, string series)
    {
        foreach (var line in scrape.Split('\n'))
        {
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
            {
                var value = line[(series.Length + 1)..];
                return value switch
                {
                    "+Inf" => double.PositiveInfinity,
                    "-Inf" => double.NegativeInfinity,
                    "NaN" => double.NaN,
                    _ => double.Parse(value, CultureInfo.InvariantCulture),
                };
            }
        }

        return null;
    }

    /// <summary>Lines of the scrape that belong to the family <paramref name="name"/> (samples only).</summary>
    public static string[] SampleLines(string scrape, string name) =>
        scrape.Split('\n')
            .Where(line => line.StartsWith(name + "{", StringComparison.Ordinal) || line.StartsWith(name + " ", StringComparison.Ordinal))
            .ToArray();
}
