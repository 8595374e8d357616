using System.Text;
using System.Text.Json;
using CsCheck;
using LlmGateway.Accounting;
using LlmGateway.Forwarding;

namespace LlmGateway.Tests.Accounting;

public sealed class PromptTokensTests
{
    private static (long Bound, long Count) Measure(string json, TokenizerKind kind, long cap = long.MaxValue)
    {
        var body = Encoding.UTF8.GetBytes(json);
        Assert.Null(LlmRequestInfo.TryParse(body, out var info, out _));
        return (PromptTokens.Bound(info.Prompt, kind), PromptTokens.Count(body, info.Prompt, kind, cap));
    }

    [Fact]
    public void Count_Chat_IsTheTextsTokensPlusFraming()
    {
        var (bound, count) = Measure("""{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello world"}]}""", TokenizerKind.O200kBase);

        // system 1, "be brief" 2, user 1, "hello world" 2; 4 per message, 3 for the reply.
        Assert.Equal(1 + 2 + 1 + 2 + (2 * PromptTokens.TokensPerMessage) + PromptTokens.ReplyTokens, count);
        Assert.Equal("system".Length + "be brief".Length + "user".Length + "hello world".Length + 8 + 3, bound);
    }

    [Fact]
    public void Count_ToolDefinitions_CountTheirJsonTextWithMargins()
    {
        const string Tools = """[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]""";
        var (_, count) = Measure($$"""{"model":"gpt-4o","tools":{{Tools}},"messages":[{"role":"user","content":"hi"}]}""", TokenizerKind.O200kBase);

        var tokenizer = OrdinaryTokenizers.For(TokenizerKind.O200kBase);
        const int Strings = 4; // the values "function", "get_weather", "object", "string"; property names are not strings
        Assert.Equal(tokenizer.CountTokens(Tools) + (Strings * PromptTokens.TokensPerJsonString) + PromptTokens.JsonOverhead
            + tokenizer.CountTokens("user") + tokenizer.CountTokens("hi") + PromptTokens.TokensPerMessage + PromptTokens.ReplyTokens, count);
    }

    [Fact]
    public void Count_TokenIds_CountOneEach_WithoutFraming()
    {
        var (bound, count) = Measure("""{"model":"gpt-3.5-turbo-instruct","prompt":[101,102,103,104]}""", TokenizerKind.Cl100kBase);

        Assert.Equal(4, count);
        Assert.Equal(4, bound);
    }

    [Fact]
    public void Count_DataUrl_IsBoundedByItsBytes_NotTokenized()
    {
        var url = "data:image/png;base64," + Convert.ToBase64String(new byte[3000]);
        var (_, count) = Measure("""{"model":"gpt-4o","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":" """.TrimEnd() + url + "\"}}]}]}", TokenizerKind.O200kBase);

        Assert.True(count >= url.Length, $"{count} < {url.Length}");
    }

    [Fact]
    public void Count_EscapedLoneSurrogate_IsBoundedByItsBytes()
    {
        var (bound, count) = Measure("""{"model":"gpt-4o","messages":[{"role":"user","content":"a\ud800b"}]}""", TokenizerKind.O200kBase);

        Assert.InRange(count, 1 + "a\\ud800b".Length + 7, bound);
    }

    [Fact]
    public void Count_StopsPastTheCap()
    {
        var content = string.Concat(Enumerable.Repeat("a long conversation goes on and on. ", 5000));
        var (bound, count) = Measure($$"""{"model":"gpt-4o","messages":[{"role":"user","content":"{{content}}"}]}""", TokenizerKind.O200kBase, cap: 1000);

        Assert.InRange(count, 1001, 3000);
        Assert.True(bound > content.Length);
    }

    [Fact]
    public void Estimate_IsBytesOverFourPlusFraming_AndNeverCounted()
    {
        var (bound, count) = Measure("""{"model":"claude","messages":[{"role":"user","content":"abcdefghijkl"}]}""", TokenizerKind.Estimate);

        Assert.Equal(((4 + 12 + 3) / 4) + PromptTokens.TokensPerMessage + PromptTokens.ReplyTokens, bound);
        Assert.Equal(bound, count);
    }

    /// <summary>
    /// The admission property: for random conversations, the cheap bound is at least the tokenizer's count, and
    /// the count is at least what OpenAI charges for them (its cookbook's rule: 3 per message, the tokens of the
    /// role and content, 1 more and the name's tokens for a name, 3 for the reply; special-token names as text).
    /// </summary>
    [Theory]
    [InlineData(TokenizerNames.O200kBase)]
    [InlineData(TokenizerNames.Cl100kBase)]
    public void Bound_IsAtLeastTheCount_WhichIsAtLeastWhatTheProviderCharges(string encoding)
    {
        var kind = TextTokenCounterTests.Kind(encoding);
        var provider = OrdinaryTokenizers.For(kind);
        var message = Gen.Select(Gen.Int[0, 3], Gen.OneOf(OrdinaryTokenizers.Text, OrdinaryTokenizers.TextWithSpecialNames), Gen.Int[0, 4], OrdinaryTokenizers.Text)
            .Select((role, content, named, name) => (Role: new[] { "system", "user", "assistant", "developer" }[role], Content: content, Name: named == 0 ? "n_" + name.Length : null));
        message.Array[1, 6].Sample(messages =>
        {
            var json = JsonSerializer.Serialize(new
            {
                model = "m",
                max_tokens = 16,
                messages = messages.Select(m => m.Name is null ? (object)new { role = m.Role, content = m.Content } : new { role = m.Role, name = m.Name, content = m.Content }),
            });
            var charged = 3 + messages.Sum(m => 3 + provider.CountTokens(m.Role) + provider.CountTokens(m.Content) + (m.Name is null ? 0 : 1 + provider.CountTokens(m.Name)));

            var (bound, count) = Measure(json, kind);

            Assert.True(count >= charged, $"count {count} < charged {charged} for {json}");
            Assert.True(bound >= count, $"bound {bound} < count {count} for {json}");
        }, iter: 300, threads: 1);
    }
}
