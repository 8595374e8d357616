using System.Buffers;
using System.IO.Pipelines;
using LlmGateway.Accounting;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Forwarding;
/// <summary>The event side of <see cref="SseRelay"/>: finding whole events in what arrived, reading usage and text from each, and dropping what the gateway itself asked for.</summary>
internal sealed partial class SseRelay
{
    /// <summary>Forwards or drops every complete event in buffer[start..end) and advances start past them.</summary>
    private static void ProcessEvents(byte[] buffer, ref int start, int end, bool final, PipeWriter writer, LlmCall call, ref RelayState state)
    {
        while (start < end)
        {
            var pending = buffer.AsSpan(start, end - start);
            var length = FindEventLength(pending);
            if (length == 0)
            {
                if (!final)
                {
                    return;
                }

                length = pending.Length;
            }

            call.Capture?.OnEvent(pending[..length]);
            ProcessEvent(pending[..length], writer, call, ref state);
            start += length;
            if (state.Garbage)
            {
                return;
            }
        }
    }

    /// <summary>Length of the first complete event including its blank-line terminator, or 0.</summary>
    internal static int FindEventLength(ReadOnlySpan<byte> data)
    {
        var lf = data.IndexOf("\n\n"u8);
        var crlf = data.IndexOf("\r\n\r\n"u8);
        if (lf >= 0 && (crlf < 0 || lf < crlf))
        {
            return lf + 2;
        }

        return crlf >= 0 ? crlf + 4 : 0;
    }

    private static void ProcessEvent(ReadOnlySpan<byte> evt, PipeWriter writer, LlmCall call, ref RelayState state)
    {
        ReadOnlySpan<byte> eventName = default;
        ReadOnlySpan<byte> data = default;
        var dataLines = 0;
        var rest = evt;
        while (!rest.IsEmpty)
        {
            var newline = rest.IndexOf((byte)'\n');
            var line = newline < 0 ? rest : rest[..newline];
            rest = newline < 0 ? default : rest[(newline + 1)..];
            if (!line.IsEmpty && line[^1] == (byte)'\r')
            {
                line = line[..^1];
            }

            if (line.StartsWith("data:"u8))
            {
                data = FieldValue(line, 5);
                dataLines++;
            }
            else if (line.StartsWith("event:"u8))
            {
                eventName = FieldValue(line, 6);
            }
        }

        if (dataLines == 0)
        {
            // Comments and keep-alives pass as they are.
            Write(writer, evt, ref state);
            return;
        }

        if (dataLines > 1)
        {
            // Multi-line data is legal SSE but no LLM provider sends it; pass it on without reading it.
            Write(writer, evt, ref state);
            return;
        }

        if (data.SequenceEqual("[DONE]"u8))
        {
            state.Finished = true;
            Write(writer, evt, ref state);
            return;
        }

        // Responses streams' .done/.completed events repeat the whole text: only deltas are delivered text.
        var messages = call.Endpoint == LlmEndpoint.Messages;
        var text = call.Endpoint != LlmEndpoint.Responses || eventName.EndsWith(".delta"u8) ? call.DeliveredText : null;
        if (!UsageReader.TryRead(data, out var info, text, messages))
        {
            state.Garbage = true;
            return;
        }

        call.Answer.Read(data);
        if (info.HasUsage)
        {
            if (messages)
            {
                // message_start's usage, updated by each message_delta's cumulative figures.
                call.StreamUsage.Update(info.Messages);
                call.Usage = call.StreamUsage.ToTokenUsage();
                call.StreamUsageFinal |= eventName.SequenceEqual("message_delta"u8);
            }
            else
            {
                call.Usage = info.Usage;
            }

            call.HasUsage = true;
        }

        if (messages)
        {
            state.TextBytes += info.TextBytes;
            state.Finished |= eventName.SequenceEqual("message_stop"u8);
        }
        else if (call.Endpoint == LlmEndpoint.Responses)
        {
            // Responses streams end with a terminal event and no [DONE]; their .done/.completed events repeat
            // the whole text, so only deltas count toward the delivered text.
            if (eventName.SequenceEqual("response.completed"u8) || eventName.SequenceEqual("response.incomplete"u8) || eventName.SequenceEqual("response.failed"u8))
            {
                state.Finished = true;
            }

            if (eventName.EndsWith(".delta"u8))
            {
                state.TextBytes += info.TextBytes;
            }
        }
        else
        {
            state.TextBytes += info.TextBytes;
        }

        if (info.IsError)
        {
            // The provider reported its own failure inside the stream: it is passed on as the stream's last word.
            state.UpstreamError = true;
        }

        if (call.InjectedIncludeUsage)
        {
            if (info.HasUsage && info.ChoicesEmpty)
            {
                return;
            }

            var (offset, count) = FindNullUsage(evt);
            if (count > 0)
            {
                Write(writer, evt[..offset], ref state);
                writer.Write(evt[(offset + count)..]);
                return;
            }
        }

        Write(writer, evt, ref state);
    }

    private static ReadOnlySpan<byte> FieldValue(ReadOnlySpan<byte> line, int nameLength)
    {
        var value = line[nameLength..];
        return !value.IsEmpty && value[0] == (byte)' ' ? value[1..] : value;
    }

    private static void Write(PipeWriter writer, ReadOnlySpan<byte> bytes, ref RelayState state)
    {
        writer.Write(bytes);
        state.WrittenEvents++;
    }

    /// <summary>
    /// Finds a <c>"usage":null</c> member (with the comma that joins it to its neighbour) in an event, for removal.
    /// Inside JSON strings quotes are escaped, so the unescaped sequence only occurs as a member name.
    /// </summary>
    internal static (int Offset, int Count) FindNullUsage(ReadOnlySpan<byte> evt)
    {
        var name = evt.LastIndexOf("\"usage\""u8);
        if (name < 0)
        {
            return (0, 0);
        }

        var i = SkipSpaces(evt, name + 7);
        if (i >= evt.Length || evt[i] != (byte)':')
        {
            return (0, 0);
        }

        i = SkipSpaces(evt, i + 1);
        if (!evt[i..].StartsWith("null"u8))
        {
            return (0, 0);
        }

        var memberEnd = i + 4;
        var before = name - 1;
        while (before >= 0 && evt[before] is (byte)' ' or (byte)'\t')
        {
            before--;
        }

        if (before >= 0 && evt[before] == (byte)',')
        {
            return (before, memberEnd - before);
        }

        // First member: remove it with the comma after it.
        var after = SkipSpaces(evt, memberEnd);
        if (after < evt.Length && evt[after] == (byte)',')
        {
            return (name, after + 1 - name);
        }

        return (name, memberEnd - name);
    }

    private static int SkipSpaces(ReadOnlySpan<byte> span, int index)
    {
        while (index < span.Length && span[index] is (byte)' ' or (byte)'\t')
        {
            index++;
        }

        return index;
    }
}
