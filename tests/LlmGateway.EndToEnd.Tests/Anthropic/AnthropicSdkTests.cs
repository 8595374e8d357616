using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Anthropic.Models.Messages;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Anthropic;

/// <summary>The official Anthropic .NET SDK, unchanged but for its base URL and key, against the gateway's /v1/messages.</summary>
public sealed class AnthropicSdkTests : MessagesTestBase
{
    [Fact]
    public async Task Create_ThroughGateway_ReturnsAnswer_AndChargesCacheReadsAndWritesAtTheirPrices()
    {
        var costs = new CostRecorder();
        using var client = Client(costs: costs, headers: [("X-Mock-Usage-Prompt", "100"), ("X-Mock-Usage-Completion", "20"), ("X-Mock-Usage-Cache-Read", "1000"), ("X-Mock-Usage-Cache-Write", "200"),
            ("anthropic-version", AnthropicVersion), ("anthropic-beta", "prompt-caching-2024-07-31")]);

        var message = await client.Messages.Create(Params(UserTurn("mock-claude", "hello from the sdk")));

        Assert.True(message.Content.Single().TryPickText(out var text));
        Assert.Equal("Mock reply to: hello from the sdk", text.Text);
        Assert.Equal(100, message.Usage.InputTokens);
        Assert.Equal(1000, message.Usage.CacheReadInputTokens);
        Assert.Equal(200, message.Usage.CacheCreationInputTokens);
        Assert.Equal(20, message.Usage.OutputTokens);
        Assert.Equal(MockClaudeCost(input: 100, cacheRead: 1000, cacheWrite: 200, output: 20), costs.Costs.Single());
        Assert.Equal(0.00165m, costs.Costs.Single());

        // The upstream got the provider's key in x-api-key, never the caller's, and anthropic-version / -beta as sent.
        var upstream = Mock.Log.Snapshot().Single();
        Assert.Equal("/v1/messages", upstream.Path);
        Assert.Equal(TestConfigs.ProviderKey, upstream.Headers["x-api-key"]);
        Assert.False(upstream.Headers.ContainsKey("Authorization"));
        Assert.Equal(AnthropicVersion, upstream.Headers["anthropic-version"]);
        Assert.Equal("prompt-caching-2024-07-31", upstream.Headers["anthropic-beta"]);

        // The same figures in the call log and the metrics: uncached input, cache reads and writes, output.
        var record = await Http.EventuallyAsync(() => Gateway.Logs.GetSnapshot().LastOrDefault(r => r.Id.Name == "LlmCall"), "the call record");
        Assert.Equal("1300", record.GetStructuredStateValue("InputTokens"));
        Assert.Equal("1000", record.GetStructuredStateValue("CachedInputTokens"));
        Assert.Equal("200", record.GetStructuredStateValue("CacheWriteTokens"));
        Assert.Equal("0.00165", record.GetStructuredStateValue("CostUsd"));
        var scrape = await Gateway.Client.GetStringAsync("/metrics");
        Assert.Equal(100, Sample(scrape, "llm_gateway_tokens_total", "type=\"input\""));
        Assert.Equal(1000, Sample(scrape, "llm_gateway_tokens_total", "type=\"cache_read\""));
        Assert.Equal(200, Sample(scrape, "llm_gateway_tokens_total", "type=\"cache_write\""));
        Assert.Equal(20, Sample(scrape, "llm_gateway_tokens_total", "type=\"output\""));
        Assert.Equal(0.00165, Sample(scrape, "llm_gateway_cost_usd_total", "team=\"research\""), 9);
    }

    /// <summary>The value of the one sample of a metric for alice's mock-claude calls that has the given label.</summary>
    private static double Sample(string scrape, string metric, string label)
    {
        var line = scrape.Split('\n').Single(l => l.StartsWith(metric + "{", StringComparison.Ordinal)
            && l.Contains(label, StringComparison.Ordinal) && l.Contains("model=\"mock-claude\"", StringComparison.Ordinal) && l.Contains("user=\"alice\"", StringComparison.Ordinal));
        return double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task RecordedRun_IsReplayed_WithNoUpstreamCall()
    {
        var body = UserTurn("mock-claude", "record this turn");
        using (var recorded = await Gateway.Client.SendAsync(Http.Post("/v1/messages", body, key: null, ("x-api-key", TestConfigs.Key), ("X-Run-Id", "rec-claude"), ("X-Gateway-Record", "true"))))
        {
            Assert.Equal(HttpStatusCode.OK, recorded.StatusCode);
        }

        // A step is stored once its answer is complete, which the caller may see first.
        await Http.EventuallyAsync(async () =>
        {
            using var jsonl = await Gateway.Client.SendAsync(BudgetCalls.Admin(HttpMethod.Get, "/admin/recordings/rec-claude"));
            return jsonl.StatusCode == HttpStatusCode.OK && (await jsonl.Content.ReadAsStringAsync()).Contains("record this turn", StringComparison.Ordinal) ? (bool?)true : null;
        }, "the step recorded");

        using var client = Client(headers: [("X-Run-Id", "replay-claude"), ("X-Gateway-Replay-Of", "rec-claude")]);
        var text = new StringBuilder();
        await foreach (var streamEvent in client.Messages.CreateStreaming(Params(body)))
        {
            if (streamEvent.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickText(out var piece))
            {
                text.Append(piece.Text);
            }
        }

        Assert.Equal("Mock reply to: record this turn", text.ToString());
        Assert.Single(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task CreateStreaming_ThroughGateway_DeliversAllText_AndChargesMessageStartUsageUpdatedByMessageDelta()
    {
        using var client = Client(headers: [("X-Run-Id", "stream-run"), ("X-Mock-Usage-Prompt", "40"), ("X-Mock-Usage-Cache-Read", "500"), ("X-Mock-Usage-Cache-Write", "60")]);
        var text = new StringBuilder();
        var events = 0;

        await foreach (var streamEvent in client.Messages.CreateStreaming(Params(UserTurn("mock-claude", "stream this please", stream: true))))
        {
            events++;
            if (streamEvent.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickText(out var textDelta))
            {
                text.Append(textDelta.Text);
            }
        }

        Assert.Equal("Mock reply to: stream this please", text.ToString());
        Assert.True(events >= 6);

        // message_start said 40 input, 500 read, 60 written and 1 output; message_delta raised the output to 6 words.
        var run = await BudgetCalls.SettledAsync(Gateway.Client, "/admin/runs/stream-run");
        Assert.Equal(MockClaudeCost(input: 40, cacheRead: 500, cacheWrite: 60, output: 6), run.GetProperty("spent_usd").GetDecimal());
    }

    [Fact]
    public async Task ToolUseExchange_InOneRun_RunSpendEqualsSumOfCostHeaders_ComputedByHand()
    {
        const string run = "tool-run-1";
        var costs = new CostRecorder();
        var weather = """{"name":"get_weather","description":"Weather in a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}""";
        (string, string)[] usage = [("X-Run-Id", run), ("X-Mock-Usage-Prompt", "300"), ("X-Mock-Usage-Cache-Read", "2000"), ("X-Mock-Usage-Cache-Write", "400"), ("X-Mock-Usage-Completion", "25")];
        using var client = Client(costs: costs, headers: [.. usage, ("X-Mock-Tool-Call", "get_weather"), ("X-Mock-Tool-Args", """{"city":"Paris"}""")]);

        // Turn 1: the model asks for the tool.
        var first = await client.Messages.Create(Params($$"""{"model":"mock-claude","max_tokens":512,"tools":[{{weather}}],"messages":[{"role":"user","content":"What is the weather in Paris?"}]}"""));
        Assert.Equal("tool_use", first.StopReason?.Raw());
        Assert.True(first.Content.Single().TryPickToolUse(out var toolUse));
        Assert.Equal("get_weather", toolUse.Name);
        Assert.Equal("Paris", toolUse.Input["city"].GetString());

        // Turn 2: the tool's result goes back; the model answers in text.
        var second = await client.Messages.Create(Params($$$"""
            {"model":"mock-claude","max_tokens":512,"tools":[{{{weather}}}],"messages":[
              {"role":"user","content":"What is the weather in Paris?"},
              {"role":"assistant","content":[{"type":"tool_use","id":"{{{toolUse.ID}}}","name":"get_weather","input":{"city":"Paris"} }]},
              {"role":"user","content":[{"type":"tool_result","tool_use_id":"{{{toolUse.ID}}}","content":"18 degrees and sunny"}]}]}
            """));
        Assert.Equal("end_turn", second.StopReason?.Raw());
        Assert.True(second.Content.Single().TryPickText(out var answer));
        Assert.Contains("18 degrees and sunny", answer.Text);

        // Each turn: 300 input + 2000 cache reads + 400 cache writes + 25 output, at mock-claude's prices.
        var perTurn = MockClaudeCost(input: 300, cacheRead: 2000, cacheWrite: 400, output: 25);
        Assert.Equal(0.003375m, perTurn);
        Assert.Equal([perTurn, perTurn], costs.Costs);
        // A call is settled just after its answer reached the caller (CI once read the run between the two).
        var spent = await BudgetCalls.SettledAsync(Gateway.Client, $"/admin/runs/{run}");
        Assert.Equal(costs.Costs.Sum(), spent.GetProperty("spent_usd").GetDecimal());
        Assert.Equal(2 * perTurn, spent.GetProperty("spent_usd").GetDecimal());
    }

    [Fact]
    public async Task CountTokens_IsForwarded_AndNeverCharged()
    {
        using var client = Client(headers: [("X-Run-Id", "count-run"), ("X-Mock-Usage-Prompt", "42")]);

        using var body = JsonDocument.Parse("""{"model":"mock-claude","messages":[{"role":"user","content":"how many tokens is this?"}]}""");
        var count = await client.Messages.CountTokens(MessageCountTokensParams.FromRawUnchecked(
            new Dictionary<string, JsonElement>(), new Dictionary<string, JsonElement>(), body.RootElement.EnumerateObject().ToDictionary(p => p.Name, p => p.Value.Clone())));

        Assert.Equal(42, count.InputTokens);
        var upstream = Mock.Log.Snapshot().Single();
        Assert.Equal("/v1/messages/count_tokens", upstream.Path);
        var user = await AdminJson("/admin/users/alice");
        Assert.Equal(0m, user.GetProperty("spent_usd").GetDecimal());
        Assert.Equal(0m, user.GetProperty("reserved_usd").GetDecimal());
    }

    [Fact]
    public async Task Overloaded529_IsRetriedAfterItsRetryAfter_AndTheCallerSeesTheAnswer()
    {
        using var client = Client(headers: [("X-Mock-Status", "529"), ("X-Mock-Fail-Times", "1"), ("X-Mock-Scenario", "overloaded-once"), ("X-Mock-Retry-After", "1")]);

        var message = await client.WithRawResponse.Messages.Create(Params(UserTurn("mock-claude", "retry me")));

        var answer = await message.Deserialize(CancellationToken.None);
        Assert.True(answer.Content.Single().TryPickText(out var text));
        Assert.Equal("Mock reply to: retry me", text.Text);
        Assert.Equal("2", message.GetHeaderValues("X-Gateway-Attempts").Single());
        var attempts = Mock.Log.Snapshot();
        Assert.Equal(2, attempts.Count);
        Assert.True(attempts[1].ReceivedAt - attempts[0].ReceivedAt >= TimeSpan.FromSeconds(1), "the retry came before the 1 s the provider asked for");
    }

    [Fact]
    public async Task InStreamOverloadedError_ReachesTheCaller_AsTheStreamsLastEvent_NotRetried()
    {
        using var request = Http.Post("/v1/messages", UserTurn("mock-claude", "one two three four five six", stream: true), key: null,
            ("x-api-key", TestConfigs.Key), ("anthropic-version", AnthropicVersion), ("X-Mock-Fail-After-Chunks", "2"), ("X-Mock-Stream-Error", "true"));
        using var response = await Gateway.Client.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith("event: message_start", events[0]);
        Assert.Equal("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}", events[^1]);
        Assert.DoesNotContain("message_stop", body);
        Assert.Single(Mock.Log.Snapshot());

        // The SDK surfaces it as the stream's failure, after the text delivered before it.
        using var client = Client(headers: [("X-Mock-Fail-After-Chunks", "2"), ("X-Mock-Stream-Error", "true")]);
        var deltas = 0;
        var failure = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            await foreach (var streamEvent in client.Messages.CreateStreaming(Params(UserTurn("mock-claude", "one two three four five six", stream: true))))
            {
                deltas += streamEvent.TryPickContentBlockDelta(out _) ? 1 : 0;
            }
        });
        Assert.Equal(2, deltas);
        var sseError = Assert.IsType<global::Anthropic.Exceptions.AnthropicSseException>(failure);
        Assert.Contains("overloaded", sseError.ToString(), StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task StreamCutByClient_IsChargedForWhatWasDelivered()
    {
        const string run = "cut-run";
        using var request = Http.Post("/v1/messages", UserTurn("mock-claude", "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu", stream: true), key: null,
            ("x-api-key", TestConfigs.Key), ("X-Run-Id", run), ("X-Mock-Chunk-Delay-Ms", "150"), ("X-Mock-Usage-Prompt", "1000"));
        string requestId;
        var deliveredText = new StringBuilder();

        // A client that really hangs up: by default SocketsHttpHandler drains an abandoned body to reuse the connection.
        using var client = new HttpClient(new SocketsHttpHandler { MaxResponseDrainSize = 0 }) { BaseAddress = new Uri(Gateway.BaseUrl) };
        using (var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            requestId = response.Headers.GetValues("X-Request-Id").Single();
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            var deltas = 0;
            while (deltas < 3 && await reader.ReadLineAsync() is { } line)
            {
                if (line.StartsWith("data: ", StringComparison.Ordinal) && line.Contains("text_delta", StringComparison.Ordinal))
                {
                    using var delta = JsonDocument.Parse(line[6..]);
                    deliveredText.Append(delta.RootElement.GetProperty("delta").GetProperty("text").GetString());
                    deltas++;
                }
            }
        }

        var record = await Http.EventuallyAsync(() => Gateway.Logs.CallFor(requestId), "call record of the abandoned stream");
        Assert.Equal("ClientAborted", record.GetStructuredStateValue("Outcome"));

        // message_start's 1000 input tokens, and output for the text delivered (at least the three deltas read, by
        // bytes / 4: mock-claude has no tokenizer), not message_start's placeholder of 1 and not the whole answer.
        var output = long.Parse(record.GetStructuredStateValue("OutputTokens")!, CultureInfo.InvariantCulture);
        Assert.InRange(output, (Encoding.UTF8.GetByteCount(deliveredText.ToString()) + 3) / 4, 15);
        Assert.Equal("True", record.GetStructuredStateValue("UsageEstimated"));
        var cost = decimal.Parse(record.GetStructuredStateValue("CostUsd")!, CultureInfo.InvariantCulture);
        Assert.Equal(MockClaudeCost(input: 1000, cacheRead: 0, cacheWrite: 0, output: output), cost);
        var spent = await Http.EventuallyAsync(async () =>
        {
            var state = await AdminJson($"/admin/runs/{run}");
            return state.GetProperty("reserved_usd").GetDecimal() == 0 ? (decimal?)state.GetProperty("spent_usd").GetDecimal() : null;
        }, "the cut stream settled");
        Assert.Equal(cost, spent);
    }
}
