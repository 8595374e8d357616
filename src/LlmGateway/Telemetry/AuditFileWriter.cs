using System.Buffers;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Telemetry;

/// <summary>
/// Appends lines to a file from a bounded queue on one background task, so the request path never waits on the
/// disk and memory stays bounded. A line that finds the queue full is dropped and counted (<see cref="Dropped"/>,
/// <c>llm_gateway_audit_dropped_total</c>). A disk error (disk full, the path unwritable or turned into a
/// directory) is logged once per outage and the batch in hand is retried every <see cref="RetryDelay"/>, the file
/// opened anew, until it is written; meanwhile new lines wait in the queue, and drop once it is full.
/// </summary>
internal sealed partial class AuditFileWriter : IDisposable
{
    /// <summary>Lines the queue holds (a rejection's record is ~300 bytes: a few MB at most).</summary>
    public const int DefaultCapacity = 10_000;

    public static readonly TimeSpan RetryDelay = TimeSpan.FromSeconds(1);

    private const int MaxBatchLines = 256;

    private readonly Channel<byte[]> _queue;
    private readonly TimeProvider _time;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _writer;
    private ILogger? _errorLog;
    private long _dropped;
    private long _failedWrites;
    private int _disposed;

    public AuditFileWriter(string path, int capacity = DefaultCapacity, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);

        Path = System.IO.Path.GetFullPath(path);
        _time = time ?? TimeProvider.System;
        _queue = Channel.CreateBounded<byte[]>(new BoundedChannelOptions(capacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _writer = Task.Run(WriteAsync);
    }

    public string Path { get; }

    /// <summary>Lines never written: the queue was full, or the writer stopped while the file could not be written.</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Attempts to write a batch that failed (each outage is logged once, not once per attempt).</summary>
    internal long FailedWrites => Interlocked.Read(ref _failedWrites);

    /// <summary>How long <see cref="Dispose"/> waits for the queue to reach the file.</summary>
    internal TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Where the writer reports its own failures. The writer exists before the host's logging does; an outage that
    /// begins earlier is reported at its next retry after this is set.
    /// </summary>
    public void SetErrorLog(ILogger log) => Volatile.Write(ref _errorLog, log);

    /// <summary>Queues one line (without its newline); never waits. False when the line was dropped.</summary>
    public bool TryWrite(byte[] line)
    {
        if (_queue.Writer.TryWrite(line))
        {
            return true;
        }

        Interlocked.Increment(ref _dropped);
        return false;
    }

    /// <summary>Writes what is queued, waiting at most <see cref="DrainTimeout"/>; what is left is counted as dropped.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _queue.Writer.TryComplete();
        if (!_writer.Wait(DrainTimeout))
        {
            _stopping.Cancel();
            _writer.Wait(TimeSpan.FromSeconds(1));
        }
    }

    private async Task WriteAsync()
    {
        var reader = _queue.Reader;
        var batch = new ArrayBufferWriter<byte>(16 * 1024);
        var lines = 0;
        FileStream? file = null;
        var failing = false;
        var reported = false;
        try
        {
            while (true)
            {
                if (lines == 0)
                {
                    if (!await reader.WaitToReadAsync().ConfigureAwait(false))
                    {
                        return;
                    }

                    while (lines < MaxBatchLines && reader.TryRead(out var line))
                    {
                        batch.Write(line);
                        batch.Write("\n"u8);
                        lines++;
                    }
                }

                try
                {
                    // Unbuffered: a batch is on its way to the disk when the write returns. A batch that failed part
                    // way is written whole on the retry, so a line may appear twice; none is lost.
                    file ??= Open();
                    await file.WriteAsync(batch.WrittenMemory).ConfigureAwait(false);
                    batch.ResetWrittenCount();
                    lines = 0;
                    if (failing)
                    {
                        failing = false;
                        if (reported)
                        {
                            reported = false;
                            Log.Recovered(_errorLog!, Path);
                        }
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    Close(ref file);
                    failing = true;
                    if (!reported && Volatile.Read(ref _errorLog) is { } log)
                    {
                        reported = true;
                        Log.WriteFailed(log, Path, RetryDelay.TotalSeconds, ex);
                    }

                    Interlocked.Increment(ref _failedWrites);

                    await Task.Delay(RetryDelay, _time, _stopping.Token).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
            // Stopped while the file could not be written: what was held is lost, and counted.
            var lost = lines;
            while (reader.TryRead(out _))
            {
                lost++;
            }

            Interlocked.Add(ref _dropped, lost);
        }
        finally
        {
            Close(ref file);
        }
    }

    private FileStream Open()
    {
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        return new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete, bufferSize: 0, useAsync: true);
    }

    private static void Close(ref FileStream? file)
    {
        try
        {
            file?.Dispose();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Nothing is buffered in the stream; the handle is released either way.
        }

        file = null;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = GatewayEventIds.AuditFileWriteFailed, EventName = "AuditFileWriteFailed", Level = LogLevel.Error,
            Message = "Cannot write the audit log {Path}; retrying every {RetrySeconds} s, new records queue and are dropped (llm_gateway_audit_dropped_total) once the queue is full")]
        public static partial void WriteFailed(ILogger logger, string path, double retrySeconds, Exception exception);

        [LoggerMessage(EventId = GatewayEventIds.AuditFileRecovered, EventName = "AuditFileRecovered", Level = LogLevel.Information,
            Message = "The audit log {Path} is written again")]
        public static partial void Recovered(ILogger logger, string path);
    }
}
