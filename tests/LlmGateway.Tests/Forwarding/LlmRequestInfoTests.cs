using System.Text;
using LlmGateway.Forwarding;

namespace LlmGateway.Tests.Forwarding;

public sealed class LlmRequestInfoTests
{
    private static string? Parse(string json, out LlmRequestInfo info) => LlmRequestInfo.TryParse(Encoding.UTF8.GetBytes(json), out info, out _);

    [Fact]
    public void TryParse_ReadsModelStreamUsageAndMaxTokens()
    {
        var error = Parse("""{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":false},"max_completion_tokens":256,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello"}]}""", out var info);

        Assert.Null(error);
        Assert.Equal("gpt-4o", info.Model);
        Assert.True(info.Stream);
        Assert.False(info.IncludeUsage);
        Assert.Equal(256, info.MaxOutputTokens);
        Assert.Equal(2, info.MessageCount);
        Assert.Equal("system".Length + "be brief".Length + "user".Length + "hello".Length, info.PromptTextBytes);
    }

    [Fact]
    public void TryParse_CountsPromptTextOfToolsAndInput_NotModelOrUser()
    {
        var error = Parse("""{"user":"someone-long-name","model":"m","input":"abcd","instructions":"efgh","tools":[{"type":"function","function":{"name":"ij"}}]}""", out var info);

        Assert.Null(error);
        Assert.Equal(4 + 4 + "function".Length + 2, info.PromptTextBytes);
        Assert.Equal(0, info.MessageCount);
    }

    [Theory]
    [InlineData("""{"messages":[]}""", "model")]
    [InlineData("""{"model":""}""", "model")]
    [InlineData("""{"model":null}""", "model")]
    [InlineData("""{"model":"m","stream":"yes"}""", "stream")]
    [InlineData("""{"model":"m","max_tokens":-5}""", "max_tokens")]
    public void TryParse_InvalidField_NamesTheParam(string json, string param)
    {
        var error = LlmRequestInfo.TryParse(Encoding.UTF8.GetBytes(json), out _, out var errorParam);

        Assert.NotNull(error);
        Assert.Equal(param, errorParam);
    }

    [Theory]
    [InlineData("""{"model":"m",""")]
    [InlineData("""{"model":"m"}{"model":"n"}""")]
    [InlineData("42")]
    [InlineData("""{"model":"m",}""")]
    public void TryParse_MalformedJson_IsRejected(string json) => Assert.NotNull(Parse(json, out _));

    [Fact]
    public void TryParse_InvalidUtf8_IsRejected()
    {
        byte[] body = [.. "{\"model\":\"m\",\"input\":\""u8, 0xFF, 0xFE, .. "\"}"u8];

        Assert.Contains("UTF-8", LlmRequestInfo.TryParse(body, out _, out _));
    }

    [Theory]
    [InlineData("""{"model":"m","temperature":0}""", true)]
    [InlineData("""{"model":"m","temperature":0.0}""", true)]
    [InlineData("""{"model":"m","seed":42,"temperature":1}""", true)]
    [InlineData("""{"model":"m","temperature":0.2}""", false)]
    [InlineData("""{"model":"m"}""", false)]
    [InlineData("""{"model":"m","seed":null}""", false)]
    public void TryParse_Deterministic_WhenTemperatureZeroOrSeed(string json, bool expected)
    {
        Assert.Null(Parse(json, out var info));
        Assert.Equal(expected, info.Deterministic);
    }
}
