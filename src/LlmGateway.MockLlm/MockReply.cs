using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using static LlmGateway.MockLlm.MockLlmConstants;

namespace LlmGateway.MockLlm;

// The deterministic answer to one request: its text, usage, ids and timestamp.
internal sealed class MockReply
{
    private const int MaxDefaultLength = 200;
    private const int IdBytes = 12;

    // The ids hash the model and prompt only, so stream options or fault headers never change them.
    private readonly byte[] _hash;

    private MockReply(string text, bool truncated, long created, MockUsage usage, byte[] hash, string fingerprint)
    {
        Fingerprint = fingerprint;
        Text = text;
        Truncated = truncated;
        Created = created;
        Usage = usage;
        _hash = hash;
    }

    public string Text { get; }

    // True when max_tokens (or its siblings) cut the reply short.
    public bool Truncated { get; }

    public long Created { get; }

    public MockUsage Usage { get; }

    // X-Mock-Fingerprint, or the default.
    public string Fingerprint { get; }

    public string FinishReason => Truncated ? "length" : "stop";

    public static MockReply Create(IHeaderDictionary headers, string model, MockPrompt prompt, string? lastUserText, int? maxWords)
    {
        string text;
        if (headers.TryGetValue(Reply, out var reply))
        {
            text = reply.ToString();
        }
        else
        {
            text = "Mock reply to: " + lastUserText;
            if (text.Length > MaxDefaultLength)
            {
                // Never split a surrogate pair.
                text = text[..(char.IsHighSurrogate(text[MaxDefaultLength - 1]) ? MaxDefaultLength - 1 : MaxDefaultLength)];
            }
        }

        // Trailing spaces would make a chunk without a word.
        text = text.TrimEnd(' ');
        var truncated = false;
        if (maxWords is int max && max >= 0)
        {
            var end = EndOfWords(text, max);
            truncated = end < text.Length;
            text = text[..end];
        }

        return Create(headers, model, prompt, text, CountWords(text), truncated);
    }

    // A reply whose content is fixed by the caller (a tool call's arguments); it is never truncated.
    public static MockReply Create(IHeaderDictionary headers, string model, MockPrompt prompt, string text, int completionTokens, bool truncated = false)
    {
        var created = long.TryParse(headers[MockLlmConstants.Created].ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value)
            ? value
            : DefaultCreated;
        var hash = SHA256.HashData(Encoding.UTF8.GetBytes(model + "\n" + prompt.Text));
        var fingerprint = headers[MockLlmConstants.Fingerprint].ToString();
        return new MockReply(text, truncated, created, MockUsage.Create(headers, prompt.Tokens, completionTokens), hash,
            fingerprint.Length > 0 ? fingerprint : SystemFingerprint);
    }

    // An id such as "chatcmpl-3f2a...": slot 0 and 1 give two independent ids (a response and its message).
    public string Id(string prefix, int slot = 0)
        => prefix + Convert.ToHexStringLower(_hash, slot * IdBytes, IdBytes);

    // A reply streams one word per chunk; a chunk after the first carries its leading space, so the chunks concatenate
    // to the text. Returns where the chunk starting at start ends.
    // The leading properties every chat and text completion object or chunk carries, in OpenAI's order.
    public void WriteCompletionHeader(Utf8JsonWriter writer, string idPrefix, string objectType, string model)
    {
        writer.WriteString("id", Id(idPrefix));
        writer.WriteString("object", objectType);
        writer.WriteNumber("created", Created);
        writer.WriteString("model", model);
        writer.WriteString("system_fingerprint", Fingerprint);
    }

    public static int NextChunkEnd(string text, int start)
    {
        var i = start;
        while (i < text.Length && text[i] == ' ')
        {
            i++;
        }

        while (i < text.Length && text[i] != ' ')
        {
            i++;
        }

        return i;
    }

    public static int CountWords(string text)
    {
        var count = 0;
        for (var start = 0; start < text.Length; start = NextChunkEnd(text, start))
        {
            count++;
        }

        return count;
    }

    private static int EndOfWords(string text, int words)
    {
        var end = 0;
        for (var i = 0; i < words && end < text.Length; i++)
        {
            end = NextChunkEnd(text, end);
        }

        return end;
    }
}
