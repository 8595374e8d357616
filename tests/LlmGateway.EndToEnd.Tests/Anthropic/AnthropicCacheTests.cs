using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using LlmGateway.EndToEnd.Tests.Infrastructure;

namespace LlmGateway.EndToEnd.Tests.Anthropic;

/// <summary>
/// The response cache on /v1/messages: one entry serves both forms, a cached message replayed as Anthropic's stream
/// events and a cached stream answered as its message; a charged hit costs what the answer cost, cache writes included.
/// </summary>
public sealed class AnthropicCacheTests : MessagesTestBase
{
    private static readonly (string, string)[] Usage = [("X-Mock-Usage-Prompt", "100"), ("X-Mock-Usage-Completion", "7"), ("X-Mock-Usage-Cache-Read", "1000"), ("X-Mock-Usage-Cache-Write", "200")];

    [Fact]
    public async Task CachedMessage_IsReplayedAsAnthropicStreamEvents_TheSdkReads()
    {
        const string body = """{"model":"mock-claude","max_tokens":100,"temperature":0,"messages":[{"role":"user","content":"cache me as json"}]}""";
        using var miss = await SendAsync(body);
        Assert.Equal("MISS", miss.Headers.GetValues("X-Gateway-Cache").Single());
        var cost = decimal.Parse(miss.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture);
        Assert.Equal(MockClaudeCost(input: 100, cacheRead: 1000, cacheWrite: 200, output: 7), cost);

        using var hit = await SendAsync(body.Replace("\"temperature\":0", "\"temperature\":0,\"stream\":true", StringComparison.Ordinal));
        var sse = await hit.Content.ReadAsStringAsync();

        Assert.Equal("HIT", hit.Headers.GetValues("X-Gateway-Cache").Single());
        Assert.Equal("text/event-stream", hit.Content.Headers.ContentType?.MediaType);
        Assert.Equal(cost, decimal.Parse(hit.Headers.GetValues("X-Gateway-Cost-Usd").Single(), CultureInfo.InvariantCulture));
        var names = sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(e => e.Split('\n')[0]).ToList();
        Assert.Equal("event: message_start", names[0]);
        Assert.Equal(["event: message_delta", "event: message_stop"], names[^2..]);
        Assert.Single(Mock.Log.Snapshot());

        // The SDK reads the replayed stream as it reads a provider's.
        using var client = Client();
        var text = new StringBuilder();
        long outputTokens = 0;
        await foreach (var streamEvent in client.Messages.CreateStreaming(Params(body.Replace("\"temperature\":0", "\"temperature\":0,\"stream\":true", StringComparison.Ordinal))))
        {
            if (streamEvent.TryPickContentBlockDelta(out var delta) && delta.Delta.TryPickText(out var piece))
            {
                text.Append(piece.Text);
            }

            if (streamEvent.TryPickDelta(out var messageDelta))
            {
                outputTokens = messageDelta.Usage.OutputTokens;
            }
        }

        Assert.Equal("Mock reply to: cache me as json", text.ToString());
        Assert.Equal(7, outputTokens);
        Assert.Single(Mock.Log.Snapshot());
    }

    [Fact]
    public async Task CachedStream_IsAnsweredAsItsMessage_ToolUseIncluded()
    {
        const string body = """{"model":"mock-claude","max_tokens":100,"temperature":0,"stream":true,"tools":[{"name":"get_weather","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":"weather in Paris?"}]}""";
        using var miss = await SendAsync(body, ("X-Mock-Tool-Call", "get_weather"), ("X-Mock-Tool-Args", """{"city":"Paris"}"""));
        await miss.Content.ReadAsStringAsync();
        Assert.Equal("MISS", miss.Headers.GetValues("X-Gateway-Cache").Single());

        using var client = Client();
        var message = await client.Messages.Create(Params(body.Replace(",\"stream\":true", string.Empty, StringComparison.Ordinal)));

        Assert.Equal("tool_use", message.StopReason?.Raw());
        Assert.True(message.Content.Single().TryPickToolUse(out var toolUse));
        Assert.Equal("get_weather", toolUse.Name);
        Assert.Equal("Paris", toolUse.Input["city"].GetString());
        Assert.Equal(100, message.Usage.InputTokens);
        Assert.Equal(1000, message.Usage.CacheReadInputTokens);
        Assert.Equal(200, message.Usage.CacheCreationInputTokens);
        Assert.Single(Mock.Log.Snapshot());
    }

    private Task<HttpResponseMessage> SendAsync(string body, params (string Name, string Value)[] headers) =>
        Gateway.Client.SendAsync(Http.Post("/v1/messages", body, key: null, [("x-api-key", TestConfigs.Key), .. Usage, .. headers]));
}
