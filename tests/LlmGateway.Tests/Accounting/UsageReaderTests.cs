using System.Text;
using LlmGateway.Accounting;

namespace LlmGateway.Tests.Accounting;

public sealed class UsageReaderTests
{
    [Fact]
    public void TryRead_ChatCompletionUsage_WithDetails()
    {
        var json = """{"id":"x","choices":[{"message":{"role":"assistant","content":"hello"}}],"usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":7}}}""";

        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(json), out var info));
        Assert.True(info.HasUsage);
        Assert.Equal(new TokenUsage(10, 4, 20, 7), info.Usage);
        Assert.Equal(5, info.TextBytes);
    }

    [Fact]
    public void TryRead_ResponsesApiUsage()
    {
        var json = """{"object":"response","usage":{"input_tokens":11,"input_tokens_details":{"cached_tokens":1},"output_tokens":22,"output_tokens_details":{"reasoning_tokens":3},"total_tokens":33}}""";

        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(json), out var info));
        Assert.Equal(new TokenUsage(11, 1, 22, 3), info.Usage);
    }

    [Fact]
    public void TryRead_ResponsesStreamCompletedEvent_FindsUsageInsideResponse()
    {
        var json = """{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":5,"output_tokens":6}}}""";

        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(json), out var info));
        Assert.Equal(new TokenUsage(5, 0, 6, 0), info.Usage);
    }

    [Fact]
    public void TryRead_UsageOnlyStreamChunk_ReportsEmptyChoices()
    {
        var json = """{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}""";

        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(json), out var info));
        Assert.True(info.ChoicesEmpty);
        Assert.True(info.HasUsage);
    }

    [Fact]
    public void TryRead_NullUsage_IsNoUsage_AndDeltaTextIsCounted()
    {
        var json = """{"choices":[{"index":0,"delta":{"content":"héllo"},"finish_reason":null}],"usage":null}""";

        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(json), out var info));
        Assert.False(info.HasUsage);
        Assert.False(info.ChoicesEmpty);
        Assert.Equal(6, info.TextBytes);
    }

    [Fact]
    public void TryRead_NestedUsageProperty_IsNotMistakenForTheCallUsage()
    {
        var json = """{"choices":[{"message":{"content":"x","usage":{"prompt_tokens":999}}}]}""";

        Assert.True(UsageReader.TryRead(Encoding.UTF8.GetBytes(json), out var info));
        Assert.False(info.HasUsage);
    }

    [Fact]
    public void TryRead_ErrorObject_IsFlagged()
    {
        Assert.True(UsageReader.TryRead("""{"error":{"message":"overloaded","type":"server_error"}}"""u8, out var info));
        Assert.True(info.IsError);
    }

    [Theory]
    [InlineData("{not json")]
    [InlineData("{\"a\":1} trailing")]
    [InlineData("[1,2]")]
    [InlineData("")]
    [InlineData("<html>502</html>")]
    public void TryRead_Garbage_ReturnsFalse(string text)
    {
        Assert.False(UsageReader.TryRead(Encoding.UTF8.GetBytes(text), out _));
    }
}
