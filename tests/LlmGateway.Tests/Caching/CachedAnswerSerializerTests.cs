using System.Text;
using LlmGateway.Accounting;
using LlmGateway.Caching;
using LlmGateway.Configuration;

namespace LlmGateway.Tests.Caching;

public sealed class CachedAnswerSerializerTests
{
    private static readonly CachedAnswer Answer = new(LlmEndpoint.ChatCompletions, "mock-small", CachedBodyKind.Json, Encoding.UTF8.GetBytes("""{"id":"x","choices":[]}"""),
        new TokenUsage(10, 2, 5, 1), 0.000123m, DateTimeOffset.FromUnixTimeMilliseconds(1_800_000_000_000), DateTimeOffset.FromUnixTimeMilliseconds(1_800_003_600_000));

    [Fact]
    public void RoundTrips()
    {
        var back = CachedAnswerSerializer.Deserialize(CachedAnswerSerializer.Serialize(Answer));

        Assert.NotNull(back);
        Assert.Equal(Answer.Body, back!.Body);
        Assert.Equal(Answer with { Body = back.Body }, back);
    }

    [Fact]
    public void EveryTruncation_IsRejected()
    {
        var value = CachedAnswerSerializer.Serialize(Answer);
        for (var length = 0; length < value.Length; length++)
        {
            Assert.Null(CachedAnswerSerializer.Deserialize(value.AsSpan(0, length)));
        }
    }

    [Fact]
    public void EveryFlippedByte_IsRejected()
    {
        var value = CachedAnswerSerializer.Serialize(Answer);
        for (var i = 0; i < value.Length; i++)
        {
            var copy = value.ToArray();
            copy[i] ^= 0x01;
            Assert.Null(CachedAnswerSerializer.Deserialize(copy));
        }
    }

    [Fact]
    public void ForeignValues_AreRejected()
    {
        Assert.Null(CachedAnswerSerializer.Deserialize("hello"u8));
        Assert.Null(CachedAnswerSerializer.Deserialize([]));
        Assert.Null(CachedAnswerSerializer.Deserialize(CachedAnswerSerializer.Serialize(Answer).Concat(new byte[] { 1 }).ToArray()));
    }
}
