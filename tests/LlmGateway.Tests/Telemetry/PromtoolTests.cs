using System.Diagnostics;
using System.Diagnostics.Metrics;
using LlmGateway.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Prometheus;
using Xunit.Abstractions;
using static LlmGateway.Tests.Telemetry.TelemetryTestHelpers;

namespace LlmGateway.Tests.Telemetry;

/// <summary>Checks scrapes with Prometheus' own parser and linter (<c>promtool check metrics</c>).</summary>
public sealed class PromtoolTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(ExpositionFormat.PrometheusText)]
    [InlineData(ExpositionFormat.OpenMetricsText)]
    public async Task Scrape_AfterMixedMeasurements_PassesPromtoolCheckMetrics(ExpositionFormat format)
    {
        using var services = new ServiceCollection().AddGatewayTelemetry().BuildServiceProvider();
        var bridge = services.GetRequiredService<MeterBridge>();
        var metrics = services.GetRequiredService<GatewayMetrics>();
        metrics.RecordRequest("alice", "gpt-4o", 200, 1.2);
        metrics.RecordRequest("bob \"the\" \\builder\\\nnewline", "gpt-4o-mini", 429, 0.01);
        metrics.RecordTokens("alice", "gpt-4o", 1000, 200, 300);
        metrics.RecordCost("alice", "sales", "gpt-4o", 0.0123m);
        metrics.RecordCost("carol", null, "gpt-4o", 0.5m);
        metrics.RecordUpstreamDuration("openai", "gpt-4o", "openai", 95);
        metrics.RecordOverhead(0.00004);
        metrics.RecordTimeToFirstToken("gpt-4o", 0.4);
        metrics.RecordRejection("alice", "rate_limited");
        metrics.RecordCacheRequest("gpt-4o", TelemetryTagValues.Miss);
        metrics.RecordCacheSaved("gpt-4o", 0.02m);
        metrics.RecordRetry("openai", "timeout", "openai");
        metrics.RecordDowngrade("gpt-4o", "gpt-4o-mini", "budget");
        metrics.RecordConfigReload(success: true);
        metrics.RecordToolCall("jira", "GET", 200, 0.3);
        metrics.RecordIdempotentReplay("jira");
        metrics.SetConfigVersion("3f2a9c1");
        metrics.SetCircuitState("openai", GatewayMetrics.CircuitOpen);
        metrics.SetBudget("alice", 2.5, 10);

        var scrape = Scrape(bridge.Registry, format);

        await AssertPromtoolAcceptsAsync(scrape, format);
    }

    [Theory]
    [InlineData(ExpositionFormat.PrometheusText)]
    [InlineData(ExpositionFormat.OpenMetricsText)]
    public async Task Scrape_OfRunningApp_PassesPromtoolCheckMetrics(ExpositionFormat format)
    {
        await using var app = await PrometheusEndpointTests.StartAppAsync();
        using var client = new HttpClient { BaseAddress = new Uri(PrometheusEndpointTests.ServerAddress(app)) };
        if (format == ExpositionFormat.OpenMetricsText)
        {
            client.DefaultRequestHeaders.TryAddWithoutValidation("Accept", "application/openmetrics-text; version=1.0.0");
        }

        await client.GetStringAsync("/hello");
        await client.GetAsync("/missing");

        var (_, scrape) = await PrometheusEndpointTests.ScrapeUntilAsync(
            client, s => s.Contains("http_route=\"/hello\"", StringComparison.Ordinal));

        await AssertPromtoolAcceptsAsync(scrape, format);
    }

    [Fact]
    public async Task Scrape_WithEveryInstrumentKind_PassesPromtoolCheckMetrics()
    {
        var meterName = UniqueMeterName();
        using var bridge = CreateBridge(meterName);
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

        await AssertPromtoolAcceptsAsync(Scrape(bridge));
    }

    /// <summary>
    /// promtool (2.42) reads the text format 0.0.4 only. An OpenMetrics scrape still parses with it, but OpenMetrics
    /// declares a counter's HELP and TYPE under its name without <c>_total</c>, so promtool sees the samples
    /// <c>x_total</c> of every counter <c>x</c> as a family without help text. Exactly those lines are allowed for
    /// OpenMetrics; any other problem fails as for the text format. (Prometheus's own OpenMetrics parser reads the
    /// scrape in PrometheusScrapeTests.)
    /// </summary>
    private async Task AssertPromtoolAcceptsAsync(string scrape, ExpositionFormat format = ExpositionFormat.PrometheusText)
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
            if (format == ExpositionFormat.OpenMetricsText)
            {
                Assert.EndsWith("# EOF\n", scrape, StringComparison.Ordinal);
                var unexpected = problems.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                    .Where(line => !IsOpenMetricsCounterArtifact(line, scrape))
                    .ToList();
                const int LintProblemsExitCode = 3;
                Assert.True(
                    process.ExitCode is 0 or LintProblemsExitCode && unexpected.Count == 0,
                    $"promtool rejected the OpenMetrics scrape (exit {process.ExitCode}):\n{string.Join("\n", unexpected)}\n---\n{scrape}");
            }
            else
            {
                Assert.True(process.ExitCode == 0 && problems.Length == 0, $"promtool rejected the scrape:\n{problems}\n---\n{scrape}");
            }
        }
        finally
        {
            File.Delete(file);
        }
    }

    private static bool IsOpenMetricsCounterArtifact(string problem, string scrape)
    {
        const string Suffix = "_total no help text";
        return problem.EndsWith(Suffix, StringComparison.Ordinal)
            && scrape.Contains($"\n# TYPE {problem[..^Suffix.Length]} counter\n", StringComparison.Ordinal);
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
