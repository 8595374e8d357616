using System.Globalization;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Telemetry;

/// <summary>Drift signals on the real /metrics and in the call log, from the mock provider's JSON answers and streams.</summary>
public sealed class DriftSignalsTests : GatewayTestBase
{
    private const string Tools = ""","tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]""";

    [Fact]
    public async Task ProviderChangesFingerprintMidTest_ServedVersionsCountsBothVersions_AndTheCallLogNamesThem()
    {
        for (var i = 0; i < 2; i++)
        {
            (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: $"before {i}"), headers: ("X-Mock-Fingerprint", "fp_old")))).Dispose();
        }

        (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "after 0"), headers: ("X-Mock-Fingerprint", "fp_new")))).Dispose();
        using (var stream = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "after 1", stream: true), headers: ("X-Mock-Fingerprint", "fp_new"))))
        {
            await stream.Content.ReadAsStringAsync();
            var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(stream.Headers.GetValues("X-Request-Id").Single()), "stream record");
            Assert.Equal("mock-small/fp_new", record.GetStructuredStateValue("ServedVersion"));
            Assert.Equal("stop", record.GetStructuredStateValue("FinishReason"));
        }

        var scrape = await ScrapeWhenAsync(s => Value(s, "llm_gateway_served_versions_total", ("model", "mock-small"), ("version", "mock-small/fp_new")) == 2);
        Assert.Equal(2, Value(scrape, "llm_gateway_served_versions_total", ("model", "mock-small"), ("version", "mock-small/fp_old")));
        Assert.Equal(4, Value(scrape, "llm_gateway_finish_reasons_total", ("model", "mock-small"), ("reason", "stop")));
        Assert.Equal(4, Value(scrape, "llm_gateway_output_tokens_count", ("model", "mock-small")));
    }

    [Fact]
    public async Task FinishReasonsAndToolCallRequests_CountedFromJsonAndStreamedAnswers()
    {
        // JSON and streamed answers calling a declared tool, one calling a tool the request did not declare, one cut by max_tokens.
        using (var json = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "weather?", extra: Tools), headers: ("X-Mock-Tool-Call", "get_weather"))))
        {
            var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(json.Headers.GetValues("X-Request-Id").Single()), "json record");
            Assert.Equal("get_weather", record.GetStructuredStateValue("ToolCalls"));
            Assert.Equal("tool_calls", record.GetStructuredStateValue("FinishReason"));
        }

        using (var stream = await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "weather, streamed?", stream: true, extra: Tools), headers: ("X-Mock-Tool-Call", "get_weather"))))
        {
            await stream.Content.ReadAsStringAsync();
            var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(stream.Headers.GetValues("X-Request-Id").Single()), "stream record");
            Assert.Equal("get_weather", record.GetStructuredStateValue("ToolCalls"));
        }

        (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "undeclared", extra: Tools), headers: ("X-Mock-Tool-Call", "drop_tables")))).Dispose();
        (await Gateway.Client.SendAsync(Http.Post("/v1/chat/completions", Http.Chat(content: "one two three four", stream: true, extra: ",\"max_tokens\":2")))).Dispose();

        var scrape = await ScrapeWhenAsync(s => Value(s, "llm_gateway_finish_reasons_total", ("model", "mock-small"), ("reason", "length")) == 1);
        Assert.Equal(3, Value(scrape, "llm_gateway_finish_reasons_total", ("model", "mock-small"), ("reason", "tool_calls")));
        Assert.Equal(2, Value(scrape, "llm_gateway_tool_call_requests_total", ("model", "mock-small"), ("tool", "get_weather")));
        Assert.Equal(1, Value(scrape, "llm_gateway_tool_call_requests_total", ("model", "mock-small"), ("tool", "other")));
        Assert.DoesNotContain("drop_tables", scrape, StringComparison.Ordinal);
    }

    private Task<string> ScrapeWhenAsync(Func<string, bool> ready) => ScrapeWhenAsync(Gateway.Client, ready);

    /// <summary>Scrapes /metrics until <paramref name="ready"/> holds (the call's metrics are recorded after its answer).</summary>
    internal static async Task<string> ScrapeWhenAsync(HttpClient client, Func<string, bool> ready)
    {
        var deadline = DateTime.UtcNow.AddSeconds(5);
        while (true)
        {
            var scrape = await client.GetStringAsync("/metrics");
            if (ready(scrape))
            {
                return scrape;
            }

            Assert.True(DateTime.UtcNow < deadline, "metrics never reached the expected values:\n" + scrape);
            await Task.Delay(20);
        }
    }

    /// <summary>The value of the one sample of <paramref name="name"/> carrying all the given labels; null when none.</summary>
    internal static double? Value(string scrape, string name, params (string Label, string Value)[] labels)
    {
        foreach (var line in scrape.Split('\n'))
        {
            if (!line.StartsWith(name + "{", StringComparison.Ordinal) || !labels.All(l => line.Contains($"{l.Label}=\"{l.Value}\"", StringComparison.Ordinal)))
            {
                continue;
            }

            return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
        }

        return null;
    }
}
