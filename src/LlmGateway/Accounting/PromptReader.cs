using System.Text.Json;

namespace LlmGateway.Accounting;

/// <summary>What the prompt of a request consists of, as <see cref="PromptReader"/> reports it.</summary>
internal interface IPromptSink
{
    /// <summary>One message of <c>messages</c> / <c>input</c>, or the <c>instructions</c> / <c>system</c> prompt: the chat format frames each.</summary>
    void Message();

    /// <summary>A string of prompt text; the reader is on it.</summary>
    void Text(ref Utf8JsonReader reader);

    /// <summary>A token id given as a number (a <c>prompt</c> or <c>input</c> of token ids).</summary>
    void TokenId();

    /// <summary>A structured member (tools, functions, response_format, ...): its JSON text and how many strings it holds.</summary>
    void Json(ReadOnlySpan<byte> json, int strings);
}

/// <summary>
/// The size of a request's prompt, read on the request path with no tokenizer: what <see cref="PromptTokens.Bound"/>
/// needs. <see cref="TextBytes"/> are the bytes of the strings as they appear in the JSON (escapes included), never
/// fewer than their UTF-8 bytes. (Ints: a body is one array, so no count exceeds its length.)
/// </summary>
internal struct PromptSize : IPromptSink
{
    public int TextBytes;
    public int JsonBytes;
    public int JsonStrings;
    public int JsonMembers;
    public int Messages;
    public int TokenIds;

    public void Message() => Messages++;

    public void Text(ref Utf8JsonReader reader) => TextBytes += reader.ValueSpan.Length;

    public void TokenId() => TokenIds++;

    public void Json(ReadOnlySpan<byte> json, int strings)
    {
        JsonBytes += json.Length;
        JsonStrings += strings;
        JsonMembers++;
    }
}

/// <summary>
/// Reads the prompt of an OpenAI-shaped request body — chat completions, completions, embeddings, responses — in
/// one forward pass: the same walk sizes the prompt on the request path (<see cref="PromptSize"/>) and counts it
/// with a tokenizer when that is needed (<see cref="PromptTokens.Count"/>), so both see the same text.
/// </summary>
/// <remarks>
/// Every member is prompt except the model, the stream switches, the output limits, the sampling parameters, user
/// and metadata. <c>messages</c> and <c>input</c> are conversations: each element is a framed message (the
/// strings inside it are its text; property names are not sent as text), numbers outside objects are token ids.
/// <c>prompt</c> is the same without framing. <c>instructions</c> / <c>system</c> are one framed message. Any other
/// member that is a string is text; one that is an object or array (tools, functions, response_format, text)
/// counts as its whole JSON text: providers render tool definitions more compactly than their JSON.
/// </remarks>
internal static class PromptReader
{
    /// <summary>False for the top-level members that are not prompt; the reader is on the member's name.</summary>
    public static bool IsPrompt(ref Utf8JsonReader reader) =>
        !(reader.ValueTextEquals("model"u8) || reader.ValueTextEquals("stream"u8) || reader.ValueTextEquals("stream_options"u8)
          || reader.ValueTextEquals("max_tokens"u8) || reader.ValueTextEquals("max_completion_tokens"u8) || reader.ValueTextEquals("max_output_tokens"u8)
          || reader.ValueTextEquals("temperature"u8) || reader.ValueTextEquals("seed"u8)
          || reader.ValueTextEquals("user"u8) || reader.ValueTextEquals("metadata"u8));

    /// <summary>Reads one top-level prompt member into the sink; the reader is on its name, and ends on the last token of its value.</summary>
    /// <param name="json">The whole body the reader reads (for the JSON text of structured members).</param>
    public static void Read<TSink>(ReadOnlySpan<byte> json, ref Utf8JsonReader reader, ref TSink sink)
        where TSink : struct, IPromptSink
    {
        var conversation = reader.ValueTextEquals("messages"u8) || reader.ValueTextEquals("input"u8);
        var prompt = !conversation && reader.ValueTextEquals("prompt"u8);
        var instructions = !conversation && !prompt && (reader.ValueTextEquals("instructions"u8) || reader.ValueTextEquals("system"u8));
        reader.Read();
        if (conversation || prompt)
        {
            ReadConversation(ref reader, ref sink, framed: conversation);
        }
        else if (instructions)
        {
            if (reader.TokenType is JsonTokenType.String or JsonTokenType.StartArray or JsonTokenType.StartObject)
            {
                sink.Message();
            }

            ReadStrings(ref reader, ref sink);
        }
        else if (reader.TokenType == JsonTokenType.String)
        {
            sink.Text(ref reader);
        }
        else if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
        {
            var start = (int)reader.TokenStartIndex;
            var depth = reader.CurrentDepth;
            var strings = 0;
            while (reader.Read() && reader.CurrentDepth > depth)
            {
                if (reader.TokenType == JsonTokenType.String)
                {
                    strings++;
                }
            }

            sink.Json(json[start..(int)reader.BytesConsumed], strings);
        }
    }

    private static void ReadConversation<TSink>(ref Utf8JsonReader reader, ref TSink sink, bool framed)
        where TSink : struct, IPromptSink
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            // A bare string input is one user message.
            if (framed)
            {
                sink.Message();
            }

            sink.Text(ref reader);
            return;
        }

        if (reader.TokenType != JsonTokenType.StartArray)
        {
            ReadStrings(ref reader, ref sink);
            return;
        }

        var depth = reader.CurrentDepth;
        var objects = 0;
        while (reader.Read() && reader.CurrentDepth > depth)
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.StartObject:
                    if (framed && objects == 0 && reader.CurrentDepth == depth + 1)
                    {
                        sink.Message();
                    }

                    objects++;
                    break;
                case JsonTokenType.EndObject:
                    objects--;
                    break;
                case JsonTokenType.String:
                    if (framed && reader.CurrentDepth == depth + 1)
                    {
                        sink.Message();
                    }

                    sink.Text(ref reader);
                    break;
                case JsonTokenType.Number when objects == 0:
                    sink.TokenId();
                    break;
            }
        }
    }

    /// <summary>Every string in the value the reader is on is text.</summary>
    private static void ReadStrings<TSink>(ref Utf8JsonReader reader, ref TSink sink)
        where TSink : struct, IPromptSink
    {
        if (reader.TokenType == JsonTokenType.String)
        {
            sink.Text(ref reader);
            return;
        }

        if (reader.TokenType is not (JsonTokenType.StartObject or JsonTokenType.StartArray))
        {
            return;
        }

        var depth = reader.CurrentDepth;
        while (reader.Read() && reader.CurrentDepth > depth)
        {
            if (reader.TokenType == JsonTokenType.String)
            {
                sink.Text(ref reader);
            }
        }
    }
}
