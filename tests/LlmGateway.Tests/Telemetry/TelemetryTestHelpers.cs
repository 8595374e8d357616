using System.Buffers;
using System.Globalization;
using System.Text;
using LlmGateway.Telemetry;

namespace LlmGateway.Tests.Telemetry;

internal static class TelemetryTestHelpers
{
    /// <summary>A meter name no default collector listens to, so parallel tests do not see each other.</summary>
    public static string UniqueMeterName() => "Tests.Telemetry." + Guid.NewGuid().ToString("N");

    public static PrometheusMetricsCollector CreateCollector(string meterName, int maxSeries = 2_000)
    {
        var options = new PrometheusMetricsOptions { MaxSeriesPerInstrument = maxSeries };
        options.MeterPrefixes.Clear();
        options.MeterNames.Clear();
        options.MeterNames.Add(meterName);
        return new PrometheusMetricsCollector(options);
    }

    public static string Scrape(PrometheusMetricsCollector collector)
    {
        var buffer = new ArrayBufferWriter<byte>();
        collector.WriteTo(buffer);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    public static string Serialize(params PrometheusMetric[] metrics)
    {
        var buffer = new ArrayBufferWriter<byte>();
        PrometheusTextSerializer.Write(buffer, metrics);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    public static TagSet Tags(params (string Name, string Value)[] tags)
    {
        var pairs = new KeyValuePair<string, string>[tags.Length];
        for (var i = 0; i < tags.Length; i++)
        {
            pairs[i] = new KeyValuePair<string, string>(tags[i].Name, tags[i].Value);
        }

        return TagSet.Create(pairs);
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
