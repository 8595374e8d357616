using System.Text;
using LlmGateway.Caching;
using LlmGateway.Configuration;

namespace LlmGateway.Tests.Caching;

public sealed class CanonicalRequestTests
{
    private static readonly ModelRoute Model = new("m", new ModelOptions { Provider = "p" }, new ProviderRoute("p", new ProviderOptions { BaseUrl = "http://127.0.0.1:9/v1" }));

    private static CanonicalRequest Of(string json) => CanonicalRequest.Create(Encoding.UTF8.GetBytes(json));

    private static string Hash(string json, string scope = "user:a", LlmEndpoint endpoint = LlmEndpoint.ChatCompletions) => Of(json).Hash(endpoint, Model, scope);

    [Fact]
    public void KeyOrderWhitespaceEscapesAndNumberSpelling_DoNotMatter()
    {
        Assert.Equal(
            Hash("""{"model":"m","temperature":0,"top_p":0.5,"messages":[{"role":"user","content":"hé"}]}"""),
            Hash("""{ "messages" : [ { "content" : "h\u00e9", "role" : "user" } ], "top_p": 0.50, "temperature": 0.0, "model": "m" }"""));
    }

    [Fact]
    public void StreamStreamOptionsAndUser_AreLeftOut_ButOnlyAtTheTop()
    {
        Assert.Equal(Hash("""{"model":"m","seed":1}"""), Hash("""{"model":"m","seed":1,"stream":true,"stream_options":{"include_usage":true},"user":"x"}"""));
        Assert.NotEqual(Hash("""{"model":"m","metadata":{"user":"a"}}"""), Hash("""{"model":"m","metadata":{"user":"b"}}"""));
    }

    [Fact]
    public void ArrayOrder_ScopeAndEndpoint_Matter()
    {
        Assert.NotEqual(Hash("""{"model":"m","stop":["a","b"]}"""), Hash("""{"model":"m","stop":["b","a"]}"""));
        Assert.NotEqual(Hash("""{"model":"m"}""", "user:a"), Hash("""{"model":"m"}""", "user:b"));
        Assert.NotEqual(Hash("""{"model":"m"}"""), Hash("""{"model":"m"}""", endpoint: LlmEndpoint.Completions));
    }

    [Fact]
    public void LargeSeeds_StayDistinct()
    {
        Assert.NotEqual(Hash("""{"model":"m","seed":9007199254740993}"""), Hash("""{"model":"m","seed":9007199254740992}"""));
    }
}
