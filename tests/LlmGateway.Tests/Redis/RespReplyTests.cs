using System.Text;
using LlmGateway.Redis;

namespace LlmGateway.Tests.Redis;

public sealed class RespReplyTests
{
    [Fact]
    public void Parses_EveryKindOfReply()
    {
        var data = Encoding.UTF8.GetBytes(":42\r\n+OK\r\n-ERR wrong\r\n$4\r\nhé!\r\n$-1\r\n*3\r\n:1\r\n*2\r\n:-2\r\n$0\r\n\r\n$-1\r\n*-1\r\n");
        var replies = ParseAll(data);

        Assert.Equal(7, replies.Count);
        Assert.Equal((RespKind.Integer, 42L), (replies[0].Kind, replies[0].Integer));
        Assert.Equal((RespKind.Simple, "OK"), (replies[1].Kind, replies[1].Text));
        Assert.Equal((RespKind.Error, "ERR wrong"), (replies[2].Kind, replies[2].Text));
        Assert.Equal((RespKind.Bulk, "hé!"), (replies[3].Kind, replies[3].Text)); // 4 bytes, 3 characters
        Assert.Equal(RespKind.Nil, replies[4].Kind);
        var array = replies[5];
        Assert.Equal(RespKind.Array, array.Kind);
        Assert.Equal(1, array.Items![0].AsInt64());
        Assert.Equal(-2, array.Items[1].Items![0].AsInt64());
        Assert.Equal((RespKind.Bulk, string.Empty), (array.Items[1].Items![1].Kind, array.Items[1].Items![1].Text));
        Assert.Equal(RespKind.Nil, array.Items[2].Kind);
        Assert.Equal(RespKind.Nil, replies[6].Kind);
    }

    [Fact]
    public void IncompleteReply_ConsumesNothing_AtEverySplit()
    {
        // A reply arrives in pieces: until the last byte is there, nothing is taken, whatever the cut.
        var whole = Encoding.UTF8.GetBytes("*4\r\n:1\r\n$3\r\nabc\r\n*1\r\n+x\r\n-ERR e\r\n");
        for (var cut = 0; cut < whole.Length; cut++)
        {
            Assert.False(RespReply.TryParse(whole.AsSpan(0, cut), out _, out var consumed), $"cut at {cut}");
            Assert.Equal(0, consumed);
        }

        Assert.True(RespReply.TryParse(whole, out var reply, out var all));
        Assert.Equal(whole.Length, all);
        Assert.Equal(4, reply.Items!.Length);
    }

    [Theory]
    [InlineData("?what\r\n")]
    [InlineData(":12x\r\n")]
    [InlineData(":1\n")]
    [InlineData("$abc\r\n")]
    [InlineData("\r\n")]
    [InlineData("*2000000\r\n")]
    public void MalformedReply_Throws(string text) =>
        Assert.Throws<InvalidDataException>(() => RespReply.TryParse(Encoding.UTF8.GetBytes(text), out _, out _));

    [Fact]
    public void AsInt64_ReadsIntegersAndNumericText_RefusesTheRest()
    {
        Assert.Equal(7, RespReply.FromInteger(7).AsInt64());
        Assert.Equal(-3, RespReply.FromText(RespKind.Bulk, "-3").AsInt64());
        Assert.Throws<InvalidCastException>(() => RespReply.FromText(RespKind.Bulk, "x").AsInt64());
        Assert.Throws<InvalidCastException>(() => RespReply.Nil.AsInt64());
    }

    private static List<RespReply> ParseAll(byte[] data)
    {
        var replies = new List<RespReply>();
        var position = 0;
        while (position < data.Length)
        {
            Assert.True(RespReply.TryParse(data.AsSpan(position), out var reply, out var consumed));
            replies.Add(reply);
            position += consumed;
        }

        return replies;
    }
}
