using System.Text;
using LlmGateway.Configuration;
using LlmGateway.Forwarding;

namespace LlmGateway.Tests.Forwarding;

/// <summary>/v1/messages bodies: max_tokens is required and bounds the reservation; system, messages and tools are the prompt.</summary>
public sealed class MessagesRequestInfoTests
{
    private static string? Parse(string json, out LlmRequestInfo info, out string? param, LlmEndpoint endpoint = LlmEndpoint.Messages) =>
        LlmRequestInfo.TryParse(Encoding.UTF8.GetBytes(json), out info, out param, endpoint);

    [Theory]
    [InlineData("""{"model":"c","messages":[]}""")]
    [InlineData("""{"model":"c","max_tokens":null,"messages":[]}""")]
    [InlineData("""{"model":"c","max_tokens":0,"messages":[]}""")]
    [InlineData("""{"model":"c","max_completion_tokens":10,"messages":[]}""")]
    public void Messages_WithoutAPositiveMaxTokens_IsRefused_NamingIt(string json)
    {
        Assert.NotNull(Parse(json, out _, out var param));
        Assert.Equal("max_tokens", param);
    }

    [Fact]
    public void Messages_MaxTokensTwice_IsRefused_NamingIt()
    {
        Assert.Contains("more than once", Parse("""{"model":"c","max_tokens":1,"max_tokens":100000,"messages":[]}""", out _, out var param));
        Assert.Equal("max_tokens", param);
    }

    [Fact]
    public void Messages_ReservesMaxTokens_AndSizesSystemMessagesAndTools()
    {
        var json = """{"model":"c","max_tokens":2048,"system":"Be brief.","tools":[{"name":"t","input_schema":{"type":"object"}}],"messages":[{"role":"user","content":[{"type":"text","text":"hello"}]}],"stream":true}""";

        Assert.Null(Parse(json, out var info, out _));

        Assert.Equal(2048, info.MaxOutputFor(new ModelOptions()));
        Assert.True(info.Stream);
        Assert.Equal(2, info.Prompt.Messages);
        Assert.True(info.Prompt.TextBytes >= "Be brief.".Length + "hello".Length);
        Assert.True(info.Prompt.JsonBytes > 0);
    }

    [Fact]
    public void CountTokens_NeedsNoMaxTokens()
    {
        Assert.Null(Parse("""{"model":"c","messages":[{"role":"user","content":"hi"}]}""", out _, out _, LlmEndpoint.CountTokens));
    }
}
