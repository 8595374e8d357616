using System.Text;
using LlmGateway.Forwarding;

namespace LlmGateway.Tests.Forwarding;

public sealed class SseRelayTests
{
    [Theory]
    [InlineData("data: a\n\ndata: b\n\n", 9)]
    [InlineData("data: a\r\n\r\ndata: b", 11)]
    [InlineData("event: x\ndata: a\n\n", 18)]
    [InlineData("data: incomplete\n", 0)]
    [InlineData("", 0)]
    public void FindEventLength_FindsTheFirstBlankLine(string text, int expected)
    {
        Assert.Equal(expected, SseRelay.FindEventLength(Encoding.UTF8.GetBytes(text)));
    }

    [Theory]
    [InlineData("""data: {"id":"c","choices":[],"usage":null}""" + "\n\n", """data: {"id":"c","choices":[]}""" + "\n\n")]
    [InlineData("""data: {"usage":null,"id":"c"}""" + "\n\n", """data: {"id":"c"}""" + "\n\n")]
    [InlineData("""data: {"id":"c" , "usage" : null}""" + "\n\n", """data: {"id":"c" }""" + "\n\n")]
    [InlineData("""data: {"id":"c","choices":[{"delta":{"content":"say \"usage\":null"}}]}""" + "\n\n", null)]
    [InlineData("""data: {"id":"c","usage":{"prompt_tokens":1}}""" + "\n\n", null)]
    public void FindNullUsage_RemovesOnlyTheNullUsageMember(string evt, string? expected)
    {
        var bytes = Encoding.UTF8.GetBytes(evt);
        var (offset, count) = SseRelay.FindNullUsage(bytes);
        var result = count == 0 ? null : Encoding.UTF8.GetString(bytes.AsSpan(0, offset)) + Encoding.UTF8.GetString(bytes.AsSpan(offset + count));

        Assert.Equal(expected, result);
    }
}
