using System.Buffers;
using System.IO.Pipelines;
using LlmGateway.Accounting;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Forwarding;

/// <summary>
/// Relays an upstream SSE stream to the caller event by event, as each arrives, reading usage and the
/// size of the generated text on the way. A whole event is forwarded as soon as its terminating blank
/// line arrives (a client cannot use half an event, so nothing usable is delayed); events split across
/// reads are reassembled. When the gateway itself asked for usage, the usage-only chunk and the
/// <c>"usage":null</c> members it causes are removed, so the caller gets the bytes it would have got
/// without them. A stream that breaks, stalls or turns to garbage ends with an SSE error event, never a
/// clean finish.
/// </summary>
internal sealed class SseRelay
{
    private const int InitialBufferSize = 16 * 1024;
    private const int MaxEventSize = 8 * 1024 * 1024;

    private readonly ILogger<SseRelay> _logger;

    public SseRelay(ILogger<SseRelay> logger) => _logger = logger;

    public async Task RelayAsync(HttpContext context, HttpResponseMessage upstream, LlmCall call)
    {
        var aborted = context.RequestAborted;
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var writer = context.Response.BodyWriter;
        var state = new RelayState();
        if (call.ServedModel.Tokenizer != TokenizerKind.Estimate)
        {
            // Kept so that a stream cut before its usage chunk is charged by count (LlmCall.SettleUsage).
            (call.DeliveredText ??= new DeliveredText()).Clear();
        }

        var buffer = ArrayPool<byte>.Shared.Rent(InitialBufferSize);
        var start = 0;
        var end = 0;
        string? failure = null;
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(aborted);
        try
        {
            await using var body = await upstream.Content.ReadAsStreamAsync(aborted);
            while (true)
            {
                if (end == buffer.Length)
                {
                    if (start > 0)
                    {
                        buffer.AsSpan(start, end - start).CopyTo(buffer);
                        end -= start;
                        start = 0;
                    }
                    else if (buffer.Length >= MaxEventSize)
                    {
                        state.Garbage = true;
                        failure = $"The provider sent a stream event larger than {MaxEventSize} bytes.";
                        break;
                    }
                    else
                    {
                        var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        buffer.AsSpan(0, end).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }
                }

                int read;
                try
                {
                    idle.CancelAfter(call.Limits.StreamIdleTimeout);
                    read = await body.ReadAsync(buffer.AsMemory(end), idle.Token);
                }
                catch (OperationCanceledException) when (aborted.IsCancellationRequested)
                {
                    call.Outcome = CallOutcome.ClientAborted;
                    break;
                }
                catch (OperationCanceledException)
                {
                    failure = $"The provider sent nothing for {call.Limits.StreamIdleTimeout.TotalSeconds:0.#} s (Gateway:Resilience:StreamIdleTimeout); the stream was aborted.";
                    break;
                }
                catch (Exception ex) when (ex is IOException or HttpRequestException)
                {
                    failure = "The connection to the provider broke in the middle of the stream.";
                    break;
                }

                if (read == 0)
                {
                    if (end > start)
                    {
                        // An unterminated last event: judge it like any other.
                        ProcessEvents(buffer, ref start, end, final: true, writer, call, ref state);
                    }

                    break;
                }

                end += read;
                var before = state.WrittenEvents;
                ProcessEvents(buffer, ref start, end, final: false, writer, call, ref state);
                if (state.Garbage)
                {
                    failure = "The provider sent a malformed stream event.";
                    break;
                }

                if (state.WrittenEvents != before)
                {
                    var flush = await writer.FlushAsync(aborted);
                    if (call.FirstChunkTimestamp == 0)
                    {
                        call.FirstChunkTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
                    }

                    call.DeliveredTextBytes = state.TextBytes;
                    if (flush.IsCanceled || flush.IsCompleted || aborted.IsCancellationRequested)
                    {
                        call.Outcome = CallOutcome.ClientAborted;
                        break;
                    }
                }

                if (start == end)
                {
                    start = end = 0;
                }
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            call.Outcome = CallOutcome.ClientAborted;
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException)
        {
            failure = "The connection to the provider broke in the middle of the stream.";
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        call.UpstreamEndTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
        call.DeliveredTextBytes = state.TextBytes;
        if (call.Outcome == CallOutcome.ClientAborted)
        {
            ForwardingLog.ClientDisconnected(_logger, call.RequestId);
            return;
        }

        if (failure is null && state.UpstreamError)
        {
            // The caller already has the provider's own error event; a second one from the gateway would only confuse it.
            call.Outcome = CallOutcome.StreamBroken;
            call.FailureDetail = "the provider reported an error inside the stream";
            ForwardingLog.StreamBroken(_logger, call.RequestId, call.ServedProvider.Name, call.FailureDetail);
            return;
        }

        if (failure is null && !state.Finished)
        {
            failure = "The provider closed the stream before it finished.";
        }

        if (failure is null)
        {
            call.Outcome = CallOutcome.Completed;
            return;
        }

        call.Outcome = state.Garbage ? CallOutcome.UpstreamGarbage : CallOutcome.StreamBroken;
        call.FailureDetail = failure;
        ForwardingLog.StreamBroken(_logger, call.RequestId, call.ServedProvider.Name, failure);
        var error = GatewayError.UpstreamError(failure);
        if (state.WrittenEvents == 0 && !context.Response.HasStarted)
        {
            // Nothing reached the caller yet: it gets a plain JSON error instead of a broken stream.
            call.PendingError = error;
            return;
        }

        try
        {
            WriteErrorEvent(writer, error, call.Endpoint == LlmEndpoint.Messages);
            await writer.FlushAsync(aborted);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException)
        {
            call.Outcome = CallOutcome.ClientAborted;
        }
    }

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

    private static void WriteErrorEvent(PipeWriter writer, GatewayError error, bool anthropic)
    {
        if (anthropic)
        {
            // Anthropic's streams name their events; its SDKs read an error event as the stream's failure.
            writer.Write("event: error\ndata: "u8);
            AnthropicError.WriteJson(error, writer);
        }
        else
        {
            writer.Write("data: "u8);
            error.WriteJson(writer);
        }

        writer.Write("\n\n"u8);
    }

    private struct RelayState
    {
        public int WrittenEvents;
        public long TextBytes;
        public bool Finished;
        public bool Garbage;
        public bool UpstreamError;
    }
}
