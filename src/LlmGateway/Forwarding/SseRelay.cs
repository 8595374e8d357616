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
internal sealed partial class SseRelay
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
        if (call.ServedModel.Tokenizer.HasTokenizer() || Tracing.LlmCallSpans.CapturesContent())
        {
            // Kept so that a stream cut before its usage chunk is charged by count (LlmCall.SettleUsage; only for models
            // with a tokenizer), and for the call span's content when Gateway:Tracing:CaptureContent is on.
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
        Tracing.LlmCallSpans.CaptureStreamedAnswer(call.DeliveredText);
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
