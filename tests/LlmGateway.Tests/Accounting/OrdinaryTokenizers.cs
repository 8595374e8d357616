using System.IO.Compression;
using System.Reflection;
using System.Text.RegularExpressions;
using CsCheck;
using LlmGateway.Accounting;
using Microsoft.ML.Tokenizers;

namespace LlmGateway.Tests.Accounting;

/// <summary>
/// The oracle: what a provider counts. OpenAI's API reads special-token names in requests as plain text (tiktoken's
/// encode_ordinary); Microsoft.ML.Tokenizers' tokenizers read them as one special token. These are built from the
/// same BPE data and pre-tokenizer regex without special tokens.
/// </summary>
internal static class OrdinaryTokenizers
{
    private static readonly Lazy<Tokenizer> O200k = new(() => Create("o200k_base", "Microsoft.ML.Tokenizers.Data.O200kBase"));
    private static readonly Lazy<Tokenizer> Cl100k = new(() => Create("cl100k_base", "Microsoft.ML.Tokenizers.Data.Cl100kBase"));

    public static Tokenizer For(TokenizerKind kind) => kind == TokenizerKind.O200kBase ? O200k.Value : Cl100k.Value;

    /// <summary>
    /// Text that exercises the tokenizers' word splitting: lowercase and capitalised words, spaces, newlines and
    /// tabs, punctuation and apostrophes, digits, accented and combining characters, CJK, emoji (surrogate pairs),
    /// and the characters of special-token names.
    /// </summary>
    public static readonly Gen<string> Text = Gen.Frequency(
            (12, Gen.Char['a', 'z']),
            (2, Gen.Char['A', 'Z']),
            (4, Gen.Char[" "]),
            (1, Gen.Char["\n\t\r"]),
            (2, Gen.Char[".,;:!?'’\"-_()[]{}/\\@#$%&*+=~`"]),
            (1, Gen.Char["<|>"]),
            (2, Gen.Char['0', '9']),
            (1, Gen.Char["éèüñçÀÉÖ\u0301\u0308\u0327"]),
            (1, Gen.Char['\u4e00', '\u4e60']),
            (1, Gen.Char["\ud83d"]))
        .Array[0, 200]
        .Select(chars => FixSurrogates(new string(chars)));

    /// <summary>Text with special-token names dropped in.</summary>
    public static readonly Gen<string> TextWithSpecialNames = Gen.Select(Text, Text, Gen.Int[0, 4])
        .Select((a, b, i) => a + new[] { "<|endoftext|>", "<|endofprompt|>", "<|fim_prefix|>", "<|im_start|>", "<|" }[i] + b);

    private static Tokenizer Create(string encoding, string dataAssembly)
    {
        var library = TiktokenTokenizer.CreateForEncoding(encoding);
        var regex = (Regex)typeof(RegexPreTokenizer).GetField("_regex", BindingFlags.NonPublic | BindingFlags.Instance)!.GetValue(library.PreTokenizer)!;
        var data = Assembly.Load(dataAssembly).GetManifestResourceStream(encoding + ".tiktoken.deflate")!;
        using var vocabulary = new DeflateStream(data, CompressionMode.Decompress);
        return TiktokenTokenizer.Create(vocabulary, new RegexPreTokenizer(regex, specialTokens: null), normalizer: null, specialTokens: null);
    }

    // Every high surrogate the generator placed gets a low surrogate after it (an emoji), so the text is valid UTF-16.
    private static string FixSurrogates(string text) => text.Replace("\ud83d", "\ud83d\ude00", StringComparison.Ordinal);
}
