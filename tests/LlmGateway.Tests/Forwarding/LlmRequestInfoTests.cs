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
        Assert.Equal(2, info.Prompt.Messages);
        Assert.Equal("system".Length + "be brief".Length + "user".Length + "hello".Length, info.Prompt.TextBytes);
        Assert.Equal(0, info.Prompt.JsonMembers);
    }

    [Fact]
    public void TryParse_SizesInputInstructionsAndTools_NotModelOrUser()
    {
        const string Tools = """[{"type":"function","function":{"name":"ij"}}]""";
        var error = Parse($$"""{"user":"someone-long-name","model":"m","input":"abcd","instructions":"efgh","tools":{{Tools}}}""", out var info);

        Assert.Null(error);
        Assert.Equal(4 + 4, info.Prompt.TextBytes);
        Assert.Equal(2, info.Prompt.Messages); // the input string and the instructions are one message each
        Assert.Equal(Tools.Length, info.Prompt.JsonBytes); // tool definitions count as their whole JSON text
        Assert.Equal(2, info.Prompt.JsonStrings);
        Assert.Equal(1, info.Prompt.JsonMembers);
    }

    [Fact]
    public void TryParse_TokenIdsInPrompt_CountOneEach()
    {
        var error = Parse("""{"model":"m","prompt":[[1,2,3],[4,5]],"logit_bias":{"7":-100}}""", out var info);

        Assert.Null(error);
        Assert.Equal(5, info.Prompt.TokenIds);
        Assert.Equal(0, info.Prompt.Messages);
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
