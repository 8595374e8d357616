using System.Globalization;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace LlmGateway.Accounting;

/// <summary>A running token count with its limits: stop counting past <see cref="Cap"/>, tokenize at most <see cref="CharsLeft"/> characters.</summary>
internal struct TokenTally
{
    public long Tokens;

    /// <summary>Counting stops once <see cref="Tokens"/> passes this (the answer is then "more than the cap").</summary>
    public long Cap;

    /// <summary>What is left of the characters the tokenizer may see; text beyond it is bounded by its UTF-8 bytes.</summary>
    public long CharsLeft;

    public TokenTally(long cap, long charsLeft)
    {
        Tokens = 0;
        Cap = cap;
        CharsLeft = charsLeft;
    }

    public readonly bool IsOver => Tokens > Cap;
}

/// <summary>
/// Counts text with OpenAI's encodings through Microsoft.ML.Tokenizers' <see cref="TiktokenTokenizer"/> (the BPE
/// data ship inside its data packages; nothing is downloaded). One tokenizer per encoding for the process, created
/// on first use or by <see cref="Preload"/> (~0.3 s; 42 MB for o200k_base, 21 MB for cl100k_base) and shared: they
/// are thread-safe.
/// </summary>
/// <remarks>
/// The count never falls below the provider's, and its cost stays bounded, because text is cut into pieces only
/// where the encodings' pre-tokenizer (the regex that splits text into words before BPE) splits it anyway — after
/// a letter, before a character that cannot continue a word — so the pieces' counts add up to the whole text's.
/// A piece is bounded by its UTF-8 bytes instead of tokenized (every token is at least one byte) when it holds
/// "&lt;|" (the library reads special-token names such as &lt;|endoftext|&gt; as one token; providers read them as
/// text), when it runs longer than <see cref="MaxPieceChars"/> without a place to cut (base64 and the like), or
/// when the request's tokenizer allowance (<see cref="TokenTally.CharsLeft"/>) is spent.
/// </remarks>
internal static class TextTokenCounter
{
    /// <summary>Pieces are cut at the last split point before this many characters.</summary>
    public const int TargetPieceChars = 4096;

    /// <summary>A piece without a split point longer than this is bounded by its bytes, not tokenized.</summary>
    public const int MaxPieceChars = 16 * 1024;

    /// <summary>Characters one request may have tokenized (~20 ms of English text); the rest is bounded by bytes.</summary>
    public const long MaxCharsPerRequest = 512 * 1024;

    private static readonly Lazy<Tokenizer?> O200k = new(() => Create(TokenizerNames.O200kBase));
    private static readonly Lazy<Tokenizer?> Cl100k = new(() => Create(TokenizerNames.Cl100kBase));

    /// <summary>The shared tokenizer of an encoding; null for the estimate (or if the encoding's data could not be loaded).</summary>
    public static Tokenizer? For(TokenizerKind kind) => kind switch
    {
        TokenizerKind.O200kBase => O200k.Value,
        TokenizerKind.Cl100kBase => Cl100k.Value,
        _ => null,
    };

    /// <summary>Creates the encoding's tokenizer on a pool thread, so the first call that counts does not wait for it.</summary>
    public static void Preload(TokenizerKind kind)
    {
        var lazy = kind switch
        {
            TokenizerKind.O200kBase => O200k,
            TokenizerKind.Cl100kBase => Cl100k,
            _ => null,
        };
        if (lazy is { IsValueCreated: false })
        {
            ThreadPool.UnsafeQueueUserWorkItem(static l => _ = l.Value, lazy, preferLocal: false);
        }
    }

    /// <summary>Adds the tokens of <paramref name="text"/> to the tally (see the remarks); stops early once the tally is over its cap.</summary>
    public static void Add(Tokenizer tokenizer, ReadOnlySpan<char> text, ref TokenTally tally)
    {
        var start = 0;
        while (start < text.Length && !tally.IsOver)
        {
            var end = PieceEnd(text, start);
            var piece = text[start..end];
            if (piece.Length > MaxPieceChars || piece.Length > tally.CharsLeft || piece.Contains("<|", StringComparison.Ordinal))
            {
                tally.Tokens += Encoding.UTF8.GetByteCount(piece);
            }
            else
            {
                tally.Tokens += tokenizer.CountTokens(piece);
                tally.CharsLeft -= piece.Length;
            }

            start = end;
        }
    }

    /// <summary>The end of the piece starting at <paramref name="start"/>: the last split point within <see cref="TargetPieceChars"/>, else the next one, else the end.</summary>
    internal static int PieceEnd(ReadOnlySpan<char> text, int start)
    {
        var limit = start + TargetPieceChars;
        if (limit >= text.Length)
        {
            return text.Length;
        }

        for (var i = limit; i > start; i--)
        {
            if (IsSplitPoint(text, i))
            {
                return i;
            }
        }

        for (var i = limit + 1; i < text.Length; i++)
        {
            if (IsSplitPoint(text, i))
            {
                return i;
            }
        }

        return text.Length;
    }

    /// <summary>
    /// True where both encodings' pre-tokenizers end a word whatever follows: after a letter, before a character
    /// that is not a letter, a combining mark (o200k_base counts marks as letters), an apostrophe (o200k_base
    /// keeps 's, 't, ... with the word) or half of a surrogate pair (which may be a letter). The word before ends
    /// there, and the next match of the regex depends only on the text from there on (the patterns look behind
    /// nothing), so counting the two sides apart gives the count of the whole.
    /// </summary>
    internal static bool IsSplitPoint(ReadOnlySpan<char> text, int i)
    {
        var next = text[i];
        return char.IsLetter(text[i - 1])
            && !char.IsLetter(next)
            && !char.IsSurrogate(next)
            && next != '\''
            && CharUnicodeInfo.GetUnicodeCategory(next) is not (UnicodeCategory.NonSpacingMark or UnicodeCategory.SpacingCombiningMark or UnicodeCategory.EnclosingMark);
    }

    private static Tokenizer? Create(string encoding)
    {
        try
        {
            return TiktokenTokenizer.CreateForEncoding(encoding);
        }
        catch (Exception ex) when (ex is InvalidOperationException or NotSupportedException or IOException or ArgumentException)
        {
            // Without its data every count falls back to the byte bound: admission stays safe, only less tight.
            return null;
        }
    }
}
