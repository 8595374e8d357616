using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Telemetry;

/// <summary>/metrics after real traffic: valid exposition, exact cost, bounded labels.</summary>
public sealed partial class MetricsEndpointTests : GatewayTestBase
{
    [Fact]
    public async Task Metrics_AfterMixedWorkload_PassPromtool_AndCostEqualsWhatClientsWereTold()
    {
        var reported = 0m;
        for (var i = 0; i < 5; i++)
        {
            using var response = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: i % 2 == 0 ? "mock-small" : "mock-large", content: $"call {i}"), headers:
                [("X-Mock-Usage-Prompt", (100 + i).ToString(CultureInfo.InvariantCulture)), ("X-Mock-Usage-Completion", "37"), ("X-Mock-Usage-Cached", "10")]));
            reported += decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture);
        }

        using (var stream = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(stream: true))))
        {
            await stream.Content.ReadAsStringAsync();
            var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(stream.Headers.GetValues("X-Request-Id").Single()), "stream record");
            reported += decimal.Parse(record.GetStructuredStateValue("CostUsd")!, CultureInfo.InvariantCulture);
        }

        (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(model: "nope")))).Dispose();
        (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: ("X-Mock-Status", "500")))).Dispose();
        await Http.EventuallyAsync(() => Gateway.Logs.Calls().Count >= 7 ? Gateway.Logs.Calls() : null, "all call records");

        var scrape = await Gateway.Client.GetStringAsync("/metrics");

        Assert.Contains("llm_gateway_requests_total{", scrape);
        Assert.Contains("llm_gateway_tokens_total{", scrape);
        Assert.Contains("llm_gateway_request_duration_seconds_bucket{", scrape);
        Assert.Contains("llm_gateway_overhead_seconds_bucket{", scrape);
        Assert.Contains("llm_gateway_config_info{", scrape);
        Assert.Contains("llm_gateway_rejections_total{", scrape);
        Assert.Contains("status=\"502\"", scrape);

        var cost = 0m;
        foreach (Match match in CostLine().Matches(scrape))
        {
            cost += decimal.Parse(match.Groups[1].Value, NumberStyles.Float, CultureInfo.InvariantCulture);
        }

        // The counter is a double; the clients' decimals summed must agree to far below a micro-dollar.
        Assert.True(reported > 0);
        Assert.InRange(cost, reported - 0.000000001m, reported + 0.000000001m);
        PromtoolCheck(scrape);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Metrics_FrameworkPerRequestMeters_OnlyWhenAskedFor(bool frameworkMeters)
    {
        var config = TestConfigs.Default(Mock.BaseUrl).Replace(
            "\"Limits\":", $"\"Metrics\": {{ \"FrameworkMeters\": {(frameworkMeters ? "true" : "false")} }}, \"Limits\":", StringComparison.Ordinal);
        await using var gateway = await GatewayServer.StartAsync(config);
        (await gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat()))).Dispose();

        // Kestrel's connection meters and the runtime's are always there; the per-request ones only on request.
        var scrape = await gateway.Client.GetStringAsync("/metrics");
        for (var i = 0; i < 50 && !scrape.Contains("llm_gateway_upstream_duration_seconds_bucket{", StringComparison.Ordinal); i++)
        {
            await Task.Delay(100);
            scrape = await gateway.Client.GetStringAsync("/metrics");
        }

        Assert.Contains("# TYPE kestrel_active_connections gauge\n", scrape);
        Assert.Contains("dotnet_gc_", scrape);
        Assert.Equal(frameworkMeters, scrape.Contains("# TYPE http_server_request_duration_seconds histogram\n", StringComparison.Ordinal));
        Assert.Equal(frameworkMeters, scrape.Contains("# TYPE http_client_request_duration_seconds histogram\n", StringComparison.Ordinal));
        PromtoolCheck(scrape);
    }

    [Fact]
    public async Task Metrics_UnknownKeysAndRunIds_CreateNoSeries()
    {
        (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: ("X-Run-Id", "run-warmup")))).Dispose();
        (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), key: "sk-unknown-warmup"))).Dispose();
        var before = SeriesCount(await Gateway.Client.GetStringAsync("/metrics"), onlyGateway: true);

        for (var i = 0; i < 1000; i++)
        {
            (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), key: $"sk-unknown-{i}", headers: ("X-Run-Id", $"run-{i}")))).Dispose();
        }

        for (var i = 0; i < 100; i++)
        {
            (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(), headers: ("X-Run-Id", $"run-known-{i}")))).Dispose();
        }

        var scrape = await Gateway.Client.GetStringAsync("/metrics");
        Assert.DoesNotContain("sk-unknown", scrape);
        Assert.DoesNotContain("run-", scrape);
        Assert.Equal(before, SeriesCount(scrape, onlyGateway: true));
    }

    private static int SeriesCount(string scrape, bool onlyGateway = false) =>
        scrape.Split('\n').Count(l => l.Length > 0 && l[0] != '#' && (!onlyGateway || (l.StartsWith("llm_gateway_", StringComparison.Ordinal) && !l.Contains("_bucket{", StringComparison.Ordinal))));

    private static void PromtoolCheck(string scrape)
    {
        var promtool = FindOnPath("promtool");
        if (promtool is null)
        {
            Assert.True(Environment.GetEnvironmentVariable("CI") is null, "promtool is required in CI (Debian package prometheus)");
            return;
        }

        var start = new ProcessStartInfo(promtool, ["check", "metrics"]) { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true };
        using var process = Process.Start(start)!;
        process.StandardInput.Write(scrape);
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEnd() + process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, "promtool check metrics: " + output);
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    [GeneratedRegex(@"^llm_gateway_cost_usd_total\{[^}]*\} (\S+)", RegexOptions.Multiline)]
    private static partial Regex CostLine();
}
