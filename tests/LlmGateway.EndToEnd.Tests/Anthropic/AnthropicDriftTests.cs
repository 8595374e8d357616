using LlmGateway.EndToEnd.Tests.Infrastructure;
using LlmGateway.EndToEnd.Tests.Telemetry;

namespace LlmGateway.EndToEnd.Tests.Anthropic;

/// <summary>Drift signals from Anthropic's Messages answers: stop_reason and tool_use blocks, in a message and a stream.</summary>
public sealed class AnthropicDriftTests : MessagesTestBase
{
    private const string Body = """{"model":"mock-claude","max_tokens":100,"tools":[{"name":"get_weather","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"weather in Paris?"}]""";

    [Fact]
    public async Task StopReasonAndToolUse_CountedFromMessageAndStream()
    {
        (await SendAsync(Body + "}")).Dispose();
        using (var stream = await SendAsync(Body + ",\"stream\":true}"))
        {
            await stream.Content.ReadAsStringAsync();
            var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(stream.Headers.GetValues("X-Request-Id").Single()), "stream record");
            Assert.Equal("tool_use", record.GetStructuredStateValue("FinishReason"));
            Assert.Equal("get_weather", record.GetStructuredStateValue("ToolCalls"));
            Assert.Equal("mock-claude", record.GetStructuredStateValue("ServedVersion"));
        }

        var scrape = await DriftSignalsTests.ScrapeWhenAsync(Gateway.Client,
            s => DriftSignalsTests.Value(s, "llm_gateway_tool_call_requests_total", ("model", "mock-claude"), ("tool", "get_weather")) == 2);
        Assert.Equal(2, DriftSignalsTests.Value(scrape, "llm_gateway_finish_reasons_total", ("model", "mock-claude"), ("reason", "tool_use")));
        Assert.Equal(2, DriftSignalsTests.Value(scrape, "llm_gateway_served_versions_total", ("model", "mock-claude"), ("version", "mock-claude")));
    }

    private Task<HttpResponseMessage> SendAsync(string body) =>
        Gateway.Client.SendAsync(Http.Post("/v1/messages", body, key: null, ("x-api-key", TestConfigs.Key), ("X-Mock-Tool-Call", "get_weather")));
}
