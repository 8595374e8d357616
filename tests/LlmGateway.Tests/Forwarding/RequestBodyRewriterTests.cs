using System.Text;
using LlmGateway.Forwarding;

namespace LlmGateway.Tests.Forwarding;

public sealed class RequestBodyRewriterTests
{
    private static string Rewrite(string json, string? model, bool includeUsage) =>
        Encoding.UTF8.GetString(RequestBodyRewriter.Rewrite(Encoding.UTF8.GetBytes(json), model, includeUsage));

    [Fact]
    public void Rewrite_AddsIncludeUsage_KeepingOrderOfEverythingElse()
    {
        Assert.Equal(
            """{"model":"m", "stream":true,"messages":[{"role":"user","content":"é 你好 \"q\""}] ,"stream_options":{"include_usage":true}}""",
            Rewrite("""{"model":"m", "stream":true,"messages":[{"role":"user","content":"é 你好 \"q\""}] }""", null, true));
    }

    [Fact]
    public void Rewrite_MergesIntoExistingStreamOptions()
    {
        Assert.Equal(
            """{"stream_options":{"other":1,"include_usage":true},"model":"m"}""",
            Rewrite("""{"stream_options":{"include_usage":false,"other":1},"model":"m"}""", null, true));
    }

    [Fact]
    public void Rewrite_EmptyObject_GetsStreamOptionsWithoutComma()
    {
        Assert.Equal("""{"stream_options":{"include_usage":true}}""", Rewrite("{}", null, true));
    }

    [Fact]
    public void Rewrite_ModelAndUsageTogether()
    {
        Assert.Equal("""{"model":"über","stream":true,"stream_options":{"include_usage":true}}""", Rewrite("""{"model":"alias","stream":true}""", "über", true));
    }

    [Fact]
    public void Rewrite_ReplacesModelOnly()
    {
        Assert.Equal("""{"model":"upstream-name","temperature":0}""", Rewrite("""{"model":"alias","temperature":0}""", "upstream-name", false));
    }
}
