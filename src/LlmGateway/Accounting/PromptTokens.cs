using System.Buffers;
using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace LlmGateway.Accounting;

/// <summary>
/// A request's prompt in tokens, two ways: <see cref="Bound"/>, from the sizes read on the request path (no
/// tokenizer), and <see cref="Count"/>, with the model's tokenizer. For a model with a tokenizer both are upper
/// bounds of the prompt tokens the provider charges, so a reservation made with either keeps spend within its
/// limits; the count is ~4× tighter on English text and costs ~30–40 µs per KB, so admission counts only where
/// the bound would be refused or is a large share of a limit (Budgets/BudgetGuard).
/// </summary>
/// <remarks>
/// <para>What the bound rests on. Text: every token is at least one byte (byte-level BPE), so bytes bound tokens;
/// the count tokenizes each string as the provider does (Accounting/TextTokenCounter). Framing: OpenAI's chat
/// format adds 3 tokens per message, 1 more for a name, and 3 that prime the reply (OpenAI's cookbook,
/// "How to count tokens with tiktoken"); here 4 per message and 3 per request. Tools: providers render function
/// definitions as a TypeScript-like declaration that drops the JSON's quotes, braces and keywords but adds ~3
/// tokens per property and per enum item and ~12 per request; here the JSON text itself, plus 3 per string in
/// it and 12 per request. Property names of messages (<c>role</c>, <c>content</c>) are not text, but the strings
/// of every member of a message are counted (ids, types, URLs), which covers the rendering of tool calls.</para>
/// <para>Outside the bound: images, audio and files are billed by the provider by size or duration, not by the
/// text of their URL or data (counted here as text, data URLs by bytes); a provider's own system prompts for
/// built-in tools (web search, ...) are not in the request. For the estimate (a model without a known tokenizer)
/// text counts bytes / 4, an estimate and not a bound.</para>
/// </remarks>
internal static class PromptTokens
{
    /// <summary>Framing per chat message: 3 in OpenAI's chat format, plus 1 for a <c>name</c>.</summary>
    public const int TokensPerMessage = 4;

    /// <summary>The tokens that open the reply after the last message (<c>&lt;|start|&gt;assistant&lt;|message|&gt;</c>).</summary>
    public const int ReplyTokens = 3;

    /// <summary>Per string in a tool definition's JSON: its rendering adds ~3 tokens per property and enum item.</summary>
    public const int TokensPerJsonString = 3;

    /// <summary>Once per request with tool definitions: the rendering's namespace wrapper.</summary>
    public const int JsonOverhead = 12;

    /// <summary>The estimate's bytes per token (OpenAI's rule of thumb for English).</summary>
    public const int EstimateBytesPerToken = 4;

    /// <summary>The prompt's tokens from its sizes alone: an upper bound (UTF-8 bytes) for every kind but the estimate, bytes / 4 for it.</summary>
    public static long Bound(in PromptSize size, TokenizerKind kind)
    {
        var bytes = (long)size.TextBytes + size.JsonBytes;
        return (kind == TokenizerKind.Estimate ? Estimate(bytes) : bytes) + size.TokenIds + Framing(size.Messages, size.JsonStrings, size.JsonMembers);
    }

    /// <summary>Bytes / 4, rounded up: the estimate for text no tokenizer counts.</summary>
    public static long Estimate(long bytes) => bytes <= 0 ? 0 : (bytes + EstimateBytesPerToken - 1) / EstimateBytesPerToken;

    /// <summary>
    /// The prompt's tokens by the tokenizer of <paramref name="kind"/>, with the same framing as the bound. Stops
    /// once the text passes <paramref name="cap"/> (the answer is then only "more than the cap"). Falls back to
    /// <see cref="Bound"/> for the estimate.
    /// </summary>
    /// <param name="body">The request body <paramref name="size"/> was read from (already checked to be valid JSON).</param>
    public static long Count(ReadOnlySpan<byte> body, in PromptSize size, TokenizerKind kind, long cap = long.MaxValue)
    {
        if (TextTokenCounter.For(kind) is not { } tokenizer)
        {
            return Bound(size, kind);
        }

        var sink = new CountingSink(tokenizer, new TokenTally(cap, TextTokenCounter.MaxCharsPerRequest));
        try
        {
            var reader = new Utf8JsonReader(body);
            reader.Read();
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName && !sink.Tally.IsOver)
            {
                if (PromptReader.IsPrompt(ref reader))
                {
                    PromptReader.Read(body, ref reader, ref sink);
                }
                else
                {
                    reader.Read();
                    reader.Skip();
                }
            }
        }
        finally
        {
            sink.ReturnBuffer();
        }

        return sink.Tally.Tokens + Framing(sink.Messages, sink.JsonStrings, sink.JsonMembers);
    }

    private static long Framing(int messages, int jsonStrings, int jsonMembers) =>
        ((long)messages * TokensPerMessage) + (messages > 0 ? ReplyTokens : 0)
        + ((long)jsonStrings * TokensPerJsonString) + (jsonMembers > 0 ? JsonOverhead : 0);

    /// <summary>Tokenizes what <see cref="PromptReader"/> reports, into one tally.</summary>
    private struct CountingSink(Tokenizer tokenizer, TokenTally tally) : IPromptSink
    {
        public TokenTally Tally = tally;
        public int Messages;
        public int JsonStrings;
        public int JsonMembers;
        private char[]? _chars;

        public void Message() => Messages++;

        public void TokenId() => Tally.Tokens++;

        public void Text(ref Utf8JsonReader reader)
        {
            var raw = reader.ValueSpan;
            if (Tally.IsOver)
            {
                return;
            }

            if (raw.StartsWith("data:"u8))
            {
                // A data URL (image, audio, file) is not text to the model: bounded by its bytes, never tokenized.
                Tally.Tokens += raw.Length;
                return;
            }

            var chars = Rent(raw.Length);
            int length;
            try
            {
                length = reader.CopyString(chars);
            }
            catch (InvalidOperationException)
            {
                // An escaped lone surrogate: not text the tokenizer takes; its bytes bound it.
                Tally.Tokens += raw.Length;
                return;
            }

            TextTokenCounter.Add(tokenizer, chars.AsSpan(0, length), ref Tally);
        }

        public void Json(ReadOnlySpan<byte> json, int strings)
        {
            JsonMembers++;
            JsonStrings += strings;
            if (Tally.IsOver)
            {
                return;
            }

            var chars = Rent(json.Length);
            var length = Encoding.UTF8.GetChars(json, chars);
            TextTokenCounter.Add(tokenizer, chars.AsSpan(0, length), ref Tally);
        }

        public void ReturnBuffer()
        {
            if (_chars is not null)
            {
                ArrayPool<char>.Shared.Return(_chars);
                _chars = null;
            }
        }

        /// <summary>A buffer of at least <paramref name="length"/> chars (UTF-8 bytes never decode to more UTF-16 chars).</summary>
        private char[] Rent(int length)
        {
            if (_chars is null || _chars.Length < length)
            {
                ReturnBuffer();
                _chars = ArrayPool<char>.Shared.Rent(Math.Max(length, 256));
            }

            return _chars;
        }
    }
}
