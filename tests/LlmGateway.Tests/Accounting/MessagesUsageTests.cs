using System.Text;
using LlmGateway.Accounting;
using LlmGateway.Configuration;

namespace LlmGateway.Tests.Accounting;

/// <summary>Anthropic's usage: cache reads and writes, and a stream's usage built from message_start and message_delta.</summary>
public sealed class MessagesUsageTests
{
    private static readonly ModelPrices Sonnet = new(3m, 0.30m, 15m, 3.75m);

    [Fact]
    public void TryRead_MessageUsage_AddsCacheReadsAndWritesToInput()
    {
        var json = """{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"hello"}],"usage":{"input_tokens":100,"cache_creation_input_tokens":200,"cache_read_input_tokens":1000,"output_tokens":20}}""";

        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(json), out var info, messages: true));

        Assert.Equal(new TokenUsage(1300, 1000, 20, 0, 200), info.Usage);
        Assert.Equal(100, info.Usage.UncachedInputTokens);
        Assert.Equal(5, info.TextBytes);
    }

    [Fact]
    public void Cost_PricesEachKindOfInput_AtItsOwnPrice()
    {
        var usage = new TokenUsage(InputTokens: 1300, CachedInputTokens: 1000, OutputTokens: 20, ReasoningTokens: 0, CacheWriteTokens: 200);

        // 100 × $3 + 1000 × $0.30 + 200 × $3.75 + 20 × $15, per million.
        Assert.Equal(0.00165m, CostCalculator.Cost(usage, Sonnet));
    }

    [Fact]
    public void CacheWritePrice_DefaultsToTheInputPrice()
    {
        var route = new ModelRoute("m", new ModelOptions { Provider = "p", InputUsdPerMTok = 3m, OutputUsdPerMTok = 15m }, new ProviderRoute("p", new ProviderOptions { BaseUrl = "http://127.0.0.1:9/v1" }));

        Assert.Equal(3m, route.Prices.CacheWritePerMTok);
    }

    [Fact]
    public void StreamUsage_IsMessageStart_UpdatedByEachMessageDeltasCumulativeFigures()
    {
        var start = """{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"usage":{"input_tokens":40,"cache_creation_input_tokens":60,"cache_read_input_tokens":500,"output_tokens":1}}}""";
        var delta = """{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":6}}""";
        var usage = default(MessagesUsage);

        foreach (var data in new[] { start, delta })
        {
            Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(data), out var info, messages: true));
            Assert.True(info.HasUsage);
            usage.Update(info.Messages);
        }

        Assert.Equal(new TokenUsage(600, 500, 6, 0, 60), usage.ToTokenUsage());
    }

    [Fact]
    public void StreamUsage_ALaterDeltaCarryingInputFigures_ReplacesThem()
    {
        var usage = new MessagesUsage { Input = 40, CacheRead = 500, CacheWrite = 60, Output = 1 };
        Assert.True(UsageReader.TryRead("""{"type":"message_delta","usage":{"input_tokens":45,"cache_read_input_tokens":null,"output_tokens":9}}"""u8, out var info, messages: true));

        usage.Update(info.Messages);

        Assert.Equal(new TokenUsage(45 + 500 + 60, 500, 9, 0, 60), usage.ToTokenUsage());
    }

    [Fact]
    public void TryRead_StreamDeltas_CountTextAndToolInputAndThinking()
    {
        Assert.True(UsageReader.TryRead("""{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"""u8, out var text, messages: true));
        Assert.True(UsageReader.TryRead("""{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}"""u8, out var tool, messages: true));
        Assert.True(UsageReader.TryRead("""{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"""u8, out var thinking, messages: true));

        Assert.Equal(5, text.TextBytes);
        Assert.True(tool.TextBytes > 0);
        Assert.Equal(3, thinking.TextBytes);
    }

    [Fact]
    public void TryRead_InStreamErrorEvent_IsAnError()
    {
        Assert.True(UsageReader.TryRead("""{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"""u8, out var info, messages: true));

        Assert.True(info.IsError);
        Assert.False(info.HasUsage);
    }
}
