using System.ClientModel;
using System.Text;
using LlmGateway.EndToEnd.Tests.Infrastructure;
using OpenAI;
using OpenAI.Chat;

namespace LlmGateway.EndToEnd.Tests.Caching;

/// <summary>Cached answers replayed through the official OpenAI .NET SDK, as streams and as JSON, whichever form stored them.</summary>
public sealed class CachedStreamTests : IAsyncLifetime
{
    private static readonly ChatCompletionOptions Deterministic = new() { Temperature = 0 };
    private MockLlmServer _mock = null!;
    private GatewayServer _gateway = null!;

    public async Task InitializeAsync()
    {
        _mock = await MockLlmServer.StartAsync();
        _gateway = await GatewayServer.StartAsync(CacheConfigs.Enabled(_mock.BaseUrl));
    }

    public async Task DisposeAsync()
    {
        await _gateway.DisposeAsync();
        await _mock.DisposeAsync();
    }

    private ChatClient Client => new("mock-small", new ApiKeyCredential(CacheConfigs.Alice),
        new OpenAIClientOptions { Endpoint = new Uri(_gateway.BaseUrl + "/v1"), NetworkTimeout = TimeSpan.FromSeconds(20) });

    private async Task<(string Text, ChatTokenUsage? Usage, ChatFinishReason? Finish)> StreamAsync(string prompt)
    {
        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (var update in Client.CompleteChatStreamingAsync([new UserChatMessage(prompt)], Deterministic))
        {
            foreach (var part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage ??= update.Usage;
            finish ??= update.FinishReason;
        }

        return (text.ToString(), usage, finish);
    }

    [Fact]
    public async Task CachedStream_ReplaysThroughSdk_WithIdenticalTextAndUsage()
    {
        var first = await StreamAsync("stream and cache this answer");
        var second = await StreamAsync("stream and cache this answer");

        Assert.Equal(1, _mock.Log.CountFor("/v1/chat/completions"));
        Assert.Equal("Mock reply to: stream and cache this answer", second.Text);
        Assert.Equal(first.Text, second.Text);
        Assert.NotNull(second.Usage);
        Assert.Equal(first.Usage!.InputTokenCount, second.Usage!.InputTokenCount);
        Assert.Equal(first.Usage.OutputTokenCount, second.Usage.OutputTokenCount);
        Assert.Equal(first.Usage.TotalTokenCount, second.Usage.TotalTokenCount);
        Assert.Equal(ChatFinishReason.Stop, second.Finish);
    }

    [Fact]
    public async Task StreamedMiss_ServesNonStreamHit()
    {
        var streamed = await StreamAsync("stream first");

        ChatCompletion completion = await Client.CompleteChatAsync([new UserChatMessage("stream first")], Deterministic);

        Assert.Equal(1, _mock.Log.CountFor("/v1/chat/completions"));
        Assert.Equal(streamed.Text, completion.Content[0].Text);
        Assert.Equal(streamed.Usage!.OutputTokenCount, completion.Usage.OutputTokenCount);
        Assert.Equal(streamed.Usage.InputTokenCount, completion.Usage.InputTokenCount);
        Assert.Equal(ChatFinishReason.Stop, completion.FinishReason);
    }

    [Fact]
    public async Task NonStreamMiss_ServesStreamHit()
    {
        ChatCompletion completion = await Client.CompleteChatAsync([new UserChatMessage("json first")], Deterministic);

        var streamed = await StreamAsync("json first");

        Assert.Equal(1, _mock.Log.CountFor("/v1/chat/completions"));
        Assert.Equal(completion.Content[0].Text, streamed.Text);
        Assert.Equal(completion.Usage.OutputTokenCount, streamed.Usage!.OutputTokenCount);
    }

    [Fact]
    public async Task StreamHit_WithoutIncludeUsage_HasNoUsageChunk_AndEndsWithDone()
    {
        var body = CacheConfigs.Chat("raw stream", stream: true);
        using (var miss = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice)))
        {
            Assert.Equal("MISS", miss.Headers.GetValues("X-Gateway-Cache").Single());
            await miss.Content.ReadAsStringAsync();
        }

        using var hit = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice));
        var events = Http.DataEvents(await hit.Content.ReadAsStringAsync());

        Assert.Equal("HIT", hit.Headers.GetValues("X-Gateway-Cache").Single());
        Assert.Equal("text/event-stream", hit.Content.Headers.ContentType!.MediaType);
        Assert.Equal("[DONE]", events[^1]);
        Assert.DoesNotContain(events, e => e.Contains("\"usage\"", StringComparison.Ordinal));
        Assert.Contains("\"role\":\"assistant\"", events[0], StringComparison.Ordinal);
        Assert.Contains("\"finish_reason\":\"stop\"", events[^2], StringComparison.Ordinal);
    }

    [Fact]
    public async Task CutStream_IsNeverCached()
    {
        var body = CacheConfigs.Chat("cut me", stream: true);
        using (var cut = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice, ("X-Mock-Fail-After-Chunks", "2"))))
        {
            await cut.Content.ReadAsStringAsync();
        }

        // (The cut call itself may have reached the mock twice: an abort before its headers were sent is a
        // connection failure the gateway rightly retries.) What matters: the next identical call goes upstream.
        var before = _mock.Log.CountFor("/v1/chat/completions");
        using var again = await _gateway.Client.SendAsync(Http.Post("/v1/chat/completions", body, CacheConfigs.Alice));
        await again.Content.ReadAsStringAsync();

        Assert.Equal("MISS", again.Headers.GetValues("X-Gateway-Cache").Single());
        Assert.Equal(before + 1, _mock.Log.CountFor("/v1/chat/completions"));
    }
}
