using LlmGateway.Forwarding;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Tests.Forwarding;

/// <summary>
/// A body the client cut short: Kestrel's read throws "Unexpected end of request content" (seen at the end of every
/// load run, as wrk stops mid-request). It is the caller's mistake: a 400 invalid_request, not an exception that the
/// pipeline answers with a 500 internal_error and an error log line.
/// </summary>
public sealed class RequestBodyReaderTests
{
    [Fact]
    public async Task BodyCutShort_IsInvalidRequest_NotAnException()
    {
        var context = new DefaultHttpContext();
        context.Request.ContentLength = 500;
        context.Request.Body = new CutStream();

        var (buffer, length, error) = await RequestBodyReader.ReadAsync(context.Request, 1 << 20, CancellationToken.None);

        Assert.Null(buffer);
        Assert.Equal(0, length);
        var refusal = Assert.NotNull(error);
        Assert.Equal(400, refusal.Status);
        Assert.Equal("invalid_request_error", refusal.Code);
        Assert.Contains("Unexpected end of request content", refusal.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ToolCallBodyCutShort_IsInvalidRequest_NotAnException()
    {
        var context = new DefaultHttpContext();
        context.Request.ContentLength = 500;
        context.Request.Body = new CutStream();

        var (_, error) = await LlmGateway.Tools.ToolRequestReader.ReadBodyAsync(context.Request, 1 << 20, CancellationToken.None);

        var refusal = Assert.NotNull(error);
        Assert.Equal(400, refusal.Status);
        Assert.Contains("Unexpected end of request content", refusal.Message, StringComparison.Ordinal);
    }

    /// <summary>Gives 20 bytes, then fails as Kestrel does when the connection ends before Content-Length.</summary>
    private sealed class CutStream : Stream
    {
        private bool _gave;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_gave)
            {
                throw new BadHttpRequestException("Unexpected end of request content.", 400);
            }

            _gave = true;
            "{\"model\":\"mock-gpt\","u8.CopyTo(buffer.Span);
            return ValueTask.FromResult(20);
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
