using System.Text;
using CsCheck;
using LlmGateway.Accounting;

namespace LlmGateway.Tests.Accounting;

public sealed class TextTokenCounterTests
{
    public static TheoryData<string> Encodings => [TokenizerNames.O200kBase, TokenizerNames.Cl100kBase];

    [Theory]
    [MemberData(nameof(Encodings))]
    public void SplitPoints_CutWhereThePreTokenizerCutsAnyway_SoPiecesAddUpToTheWhole(string encoding)
    {
        var kind = Kind(encoding);
        var tokenizer = OrdinaryTokenizers.For(kind);
        var splits = 0;
        OrdinaryTokenizers.Text.Sample(text =>
        {
            var whole = tokenizer.CountTokens(text);
            for (var i = 1; i < text.Length; i++)
            {
                if (TextTokenCounter.IsSplitPoint(text, i))
                {
                    Interlocked.Increment(ref splits);
                    Assert.True(tokenizer.CountTokens(text.AsSpan(0, i)) + tokenizer.CountTokens(text.AsSpan(i)) == whole, $"split at {i} of {Escape(text)}");
                }
            }
        }, iter: 300, threads: 1);

        Assert.True(splits > 1000, $"only {splits} split points were tried");
    }

    [Theory]
    [MemberData(nameof(Encodings))]
    public void Add_NeverCountsLessThanTheProvider(string encoding)
    {
        var kind = Kind(encoding);
        var library = TextTokenCounter.For(kind)!;
        var provider = OrdinaryTokenizers.For(kind);
        Gen.OneOf(OrdinaryTokenizers.Text, OrdinaryTokenizers.TextWithSpecialNames).Sample(text =>
        {
            var tally = new TokenTally(long.MaxValue, long.MaxValue);
            TextTokenCounter.Add(library, text, ref tally);
            Assert.True(tally.Tokens >= provider.CountTokens(text), $"{tally.Tokens} < {provider.CountTokens(text)} for {Escape(text)}");
            if (!text.Contains("<|", StringComparison.Ordinal))
            {
                Assert.Equal(provider.CountTokens(text), tally.Tokens);
            }
        }, iter: 500, threads: 1);
    }

    [Fact]
    public void Add_LongText_IsCutIntoPieces_AndCountsLikeTheWhole()
    {
        var text = string.Concat(Enumerable.Repeat("The parcel left the warehouse on Monday, and nobody has seen it since. ", 400));
        var tally = new TokenTally(long.MaxValue, long.MaxValue);

        TextTokenCounter.Add(TextTokenCounter.For(TokenizerKind.O200kBase)!, text, ref tally);

        Assert.True(text.Length > 4 * TextTokenCounter.TargetPieceChars);
        Assert.Equal(OrdinaryTokenizers.For(TokenizerKind.O200kBase).CountTokens(text), tally.Tokens);
    }

    [Fact]
    public void Add_SpecialTokenName_IsBoundedByItsBytes_NotCountedAsOneToken()
    {
        var tally = new TokenTally(long.MaxValue, long.MaxValue);

        TextTokenCounter.Add(TextTokenCounter.For(TokenizerKind.O200kBase)!, "<|endoftext|>", ref tally);

        Assert.Equal(7, OrdinaryTokenizers.For(TokenizerKind.O200kBase).CountTokens("<|endoftext|>"));
        Assert.Equal("<|endoftext|>".Length, tally.Tokens);
    }

    [Fact]
    public void Add_PieceWithoutSplitPoint_LongerThanTheLimit_IsBoundedByBytes()
    {
        var text = new string('a', TextTokenCounter.MaxPieceChars + 1);
        var tally = new TokenTally(long.MaxValue, long.MaxValue);

        TextTokenCounter.Add(TextTokenCounter.For(TokenizerKind.O200kBase)!, text, ref tally);

        Assert.Equal(text.Length, tally.Tokens);
    }

    [Fact]
    public void Add_PastTheCharacterAllowance_BoundsTheRestByBytes()
    {
        var text = "hello world, hello world";
        var tally = new TokenTally(long.MaxValue, charsLeft: 0);

        TextTokenCounter.Add(TextTokenCounter.For(TokenizerKind.O200kBase)!, text, ref tally);

        Assert.Equal(Encoding.UTF8.GetByteCount(text), tally.Tokens);
    }

    [Fact]
    public void Add_StopsOnceOverTheCap()
    {
        var text = string.Concat(Enumerable.Repeat("many words in a long prompt ", 2000));
        var tally = new TokenTally(cap: 100, long.MaxValue);

        TextTokenCounter.Add(TextTokenCounter.For(TokenizerKind.O200kBase)!, text, ref tally);

        Assert.True(tally.IsOver);
        Assert.InRange(tally.Tokens, 101, 2 * TextTokenCounter.TargetPieceChars);
        Assert.True(tally.CharsLeft > long.MaxValue - (2 * TextTokenCounter.TargetPieceChars), "it tokenized more than one piece past the cap");
    }

    internal static TokenizerKind Kind(string encoding)
    {
        Assert.True(TokenizerNames.TryParse(encoding, out var kind));
        return kind;
    }

    private static string Escape(string text) => System.Text.Json.JsonSerializer.Serialize(text);
}
