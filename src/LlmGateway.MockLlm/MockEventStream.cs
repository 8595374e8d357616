using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;

namespace LlmGateway.MockLlm;

// Writes server-sent events one at a time, flushing each, and plays the stream faults: X-Mock-Chunk-Delay-Ms,
// X-Mock-Split-Events and X-Mock-Fail-After-Chunks (with X-Mock-Stream-Error: an in-stream error event instead of a cut).
internal sealed class MockEventStream : IDisposable
{
    private const int SplitPauseMs = 5;
    private const int AbortGraceMs = 100;

    private readonly HttpContext _context;
    private readonly MockFaults _faults;
    private readonly PooledBufferWriter _buffer = new();
    private readonly Utf8JsonWriter _writer;
    private int _eventsSent;
    private int _contentSent;

    public MockEventStream(MockCall call)
    {
        _context = call.Context;
        _faults = call.Faults;
        _writer = MockJson.CreateWriter(_buffer);

        var response = _context.Response;
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        _context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
    }

    // Starts an event ("event: type" line when given, then "data: ") and returns the writer for its JSON.
    public Utf8JsonWriter BeginEvent(string? type = null)
    {
        _buffer.Clear();
        if (type is not null)
        {
            _buffer.Write("event: "u8);
            _buffer.Advance(Encoding.UTF8.GetBytes(type, _buffer.GetSpan(Encoding.UTF8.GetMaxByteCount(type.Length))));
            _buffer.Write("\n"u8);
        }

        _buffer.Write("data: "u8);
        _writer.Reset(_buffer);
        return _writer;
    }

    public Task SendEventAsync()
    {
        _writer.Flush();
        _buffer.Write("\n\n"u8);
        return SendBufferAsync();
    }

    // Sends an event carrying reply content; false when X-Mock-Fail-After-Chunks cut the stream instead.
    public async Task<bool> SendContentEventAsync()
    {
        if (_faults.FailAfterChunks is int limit && _contentSent >= limit)
        {
            await AbortAsync();
            return false;
        }

        await SendEventAsync();
        _contentSent++;
        return true;
    }

    // After the last content event: a fail-after-chunks limit the reply never reached still cuts the stream here.
    public async Task<bool> EndContentAsync()
    {
        if (_faults.FailAfterChunks is null)
        {
            return true;
        }

        await AbortAsync();
        return false;
    }

    // Ends a chat or text completion stream: the usage chunk ("choices":[]) when include_usage asked for it, then [DONE].
    public async Task SendCompletionEndAsync(MockReply reply, string idPrefix, string objectType, string model, bool includeUsage, bool chatUsage)
    {
        if (includeUsage)
        {
            var writer = BeginEvent();
            writer.WriteStartObject();
            reply.WriteCompletionHeader(writer, idPrefix, objectType, model);
            writer.WriteStartArray("choices");
            writer.WriteEndArray();
            if (chatUsage)
            {
                reply.Usage.WriteChat(writer);
            }
            else
            {
                reply.Usage.WriteCompletions(writer);
            }

            writer.WriteEndObject();
            await SendEventAsync();
        }

        _buffer.Clear();
        _buffer.Write("data: [DONE]\n\n"u8);
        await SendBufferAsync();
    }

    public void Dispose()
    {
        _writer.Dispose();
        _buffer.Dispose();
    }

    // Abort resets the connection at once, dropping whatever Kestrel has not yet handed to the socket; a short pause
    // lets the events already written reach the client first.
    private async Task AbortAsync()
    {
        if (_faults.StreamError)
        {
            // OpenAI's way of failing mid-stream: an error object as the last data event, no [DONE], then a normal end.
            // Anthropic's: an "error" event (overloaded_error, as its API sends when it is overloaded mid-answer).
            _buffer.Clear();
            _buffer.Write(MockFaults.IsMessages(_context)
                ? "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"u8
                : "data: {\"error\":{\"message\":\"mock stream error\",\"type\":\"server_error\",\"param\":null,\"code\":\"server_error\"}}\n\n"u8);
            await SendBufferAsync();
            return;
        }

        await Task.Delay(AbortGraceMs, _context.RequestAborted);
        _context.Abort();
    }

    private async Task SendBufferAsync()
    {
        var cancellationToken = _context.RequestAborted;
        if (_eventsSent++ > 0 && _faults.ChunkDelayMs > 0)
        {
            await Task.Delay(_faults.ChunkDelayMs, cancellationToken);
        }

        var body = _context.Response.BodyWriter;
        var data = _buffer.WrittenMemory;
        if (_faults.SplitEvents && data.Length > 1)
        {
            // Two flushed writes with a pause between, so a proxy reads the event in two pieces.
            var half = data.Length / 2;
            await body.WriteAsync(data[..half], cancellationToken);
            await Task.Delay(SplitPauseMs, cancellationToken);
            data = data[half..];
        }

        await body.WriteAsync(data, cancellationToken);
    }
}
