using System.Diagnostics;
using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;
using static LlmGateway.Tests.Telemetry.TelemetryTestHelpers;

namespace LlmGateway.Tests.Telemetry;

/// <summary>Checks scrapes with Prometheus' own parser and linter (<c>promtool check metrics</c>).</summary>
public sealed class PromtoolTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Scrape_AfterMixedMeasurements_PassesPromtoolCheckMetrics()
    {
        using var services = new ServiceCollection().AddGatewayTelemetry().BuildServiceProvider();
        var collector = services.GetRequiredService<PrometheusMetricsCollector>();
        var metrics = services.GetRequiredService<GatewayMetrics>();
        metrics.RecordRequest("alice", "gpt-4o", 200, 1.2);
        metrics.RecordRequest("bob \"the\" \\builder\\\nnewline", "gpt-4o-mini", 429, 0.01);
        metrics.RecordTokens("alice", "gpt-4o", 1000, 200, 300);
        metrics.RecordCost("alice", "sales", "gpt-4o", 0.0123m);
        metrics.RecordCost("carol", null, "gpt-4o", 0.5m);
        metrics.RecordUpstreamDuration("openai", "gpt-4o", 95);
        metrics.RecordOverhead(0.00004);
        metrics.RecordTimeToFirstToken("gpt-4o", 0.4);
        metrics.RecordRejection("alice", "rate_limited");
        metrics.RecordCacheRequest("gpt-4o", TelemetryTagValues.Miss);
        metrics.RecordCacheSaved("gpt-4o", 0.02m);
        metrics.RecordRetry("openai", "timeout");
        metrics.RecordDowngrade("gpt-4o", "gpt-4o-mini", "budget");
        metrics.RecordConfigReload(success: true);
        metrics.RecordToolCall("jira", "GET", 200, 0.3);
        metrics.RecordIdempotentReplay("jira");
        metrics.SetConfigVersion("3f2a9c1");
        metrics.SetCircuitState("openai", GatewayMetrics.CircuitOpen);
        metrics.SetBudget("alice", 2.5, 10);

        var scrape = Scrape(collector);

        await AssertPromtoolAcceptsAsync(scrape);
    }

    [Fact]
    public async Task Scrape_OfRunningApp_PassesPromtoolCheckMetrics()
    {
        await using var app = await PrometheusEndpointTests.StartAppAsync();
        using var client = new HttpClient { BaseAddress = new Uri(PrometheusEndpointTests.ServerAddress(app)) };
        await client.GetStringAsync("/hello");
        await client.GetAsync("/missing");

        var (_, scrape) = await PrometheusEndpointTests.ScrapeUntilAsync(
            client, s => s.Contains("http_route=\"/hello\"", StringComparison.Ordinal));

        await AssertPromtoolAcceptsAsync(scrape);
    }

    [Fact]
    public async Task Scrape_WithEveryInstrumentKind_PassesPromtoolCheckMetrics()
    {
        var meterName = UniqueMeterName();
        using var collector = CreateCollector(meterName);
        using var meter = new Meter(meterName);
        meter.CreateCounter<long>("test.requests", "{request}", "Requests.").Add(1, new KeyValuePair<string, object?>("http.route", "/x"));
        meter.CreateCounter<double>("test.sent", "By", "Bytes sent.").Add(12.5);
        meter.CreateUpDownCounter<int>("test.in_flight", "{request}", "In flight.").Add(2);
        meter.CreateGauge<double>("test.temperature", null, "Temperature.").Record(-3.5);
        meter.CreateObservableCounter("test.cpu.time", () => 1.5, "s", "CPU time.");
        meter.CreateObservableUpDownCounter("test.queue", () => 4L, null, "Queue length.");
        meter.CreateObservableGauge("test.ratio", () => double.NaN, null, "Ratio.");
        meter.CreateHistogram<long>("test.payload", "By", "Payload size.").Record(300);
        meter.CreateHistogram<double>("test.latency", "s", "Latency.").Record(0.02, new KeyValuePair<string, object?>("le", "clash"));

        await AssertPromtoolAcceptsAsync(Scrape(collector));
    }

    private async Task AssertPromtoolAcceptsAsync(string scrape)
    {
        var promtool = FindPromtool();
        if (promtool is null)
        {
            Assert.True(
                string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI")),
                "promtool is required in CI (Debian package 'prometheus').");
            output.WriteLine("SKIPPED: promtool not found on PATH; install the Debian package 'prometheus' to run this check.");
            return;
        }

        var file = Path.Combine(Path.GetTempPath(), $"llmgateway-scrape-{Guid.NewGuid():N}.prom");
        await File.WriteAllTextAsync(file, scrape);
        try
        {
            var start = new ProcessStartInfo(promtool, ["check", "metrics"])
            {
                RedirectStandardInput = true,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            await using (var input = File.OpenRead(file))
            {
                await input.CopyToAsync(process.StandardInput.BaseStream);
            }

            process.StandardInput.Close();
            await process.WaitForExitAsync();
            var problems = (await stdout + await stderr).Trim();

            output.WriteLine($"promtool check metrics ({file}): exit {process.ExitCode}");
            output.WriteLine(problems);
            Assert.True(process.ExitCode == 0 && problems.Length == 0, $"promtool rejected the scrape:\n{problems}\n---\n{scrape}");
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static string? FindPromtool()
    {
        foreach (var directory in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator))
        {
            var candidate = Path.Combine(directory, "promtool");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return null;
    }
}
