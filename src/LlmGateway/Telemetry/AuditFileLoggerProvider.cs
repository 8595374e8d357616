using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Telemetry;

/// <summary>
/// Writes the <see cref="AuditLog.Category"/> records, one JSON object per line, to a file (appended). Records are
/// queued and written by one background task so the request path never waits on the disk; on shutdown the queue
/// is drained. Nothing is dropped.
/// </summary>
internal sealed class AuditFileLoggerProvider : ILoggerProvider
{
    private readonly Channel<string> _queue = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Task _writer;

    public AuditFileLoggerProvider(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        _writer = Task.Run(WriteAsync);
    }

    public string Path { get; }

    public ILogger CreateLogger(string categoryName) => categoryName == AuditLog.Category ? new AuditLogger(this) : NullLogger.Instance;

    public void Dispose()
    {
        _queue.Writer.TryComplete();
        _writer.Wait(TimeSpan.FromSeconds(5));
    }

    private async Task WriteAsync()
    {
        await using var file = new FileStream(Path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite, 4096, useAsync: true);
        await using var writer = new StreamWriter(file, new UTF8Encoding(false));
        while (await _queue.Reader.WaitToReadAsync())
        {
            while (_queue.Reader.TryRead(out var line))
            {
                await writer.WriteLineAsync(line);
            }

            await writer.FlushAsync();
        }
    }

    private sealed class AuditLogger(AuditFileLoggerProvider owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var buffer = new System.Buffers.ArrayBufferWriter<byte>(512);
            using (var json = new Utf8JsonWriter(buffer))
            {
                json.WriteStartObject();
                json.WriteString("time", DateTimeOffset.UtcNow);
                json.WriteString("event", eventId.Name);
                if (state is IEnumerable<KeyValuePair<string, object?>> fields)
                {
                    foreach (var (key, value) in fields)
                    {
                        if (key == "{OriginalFormat}")
                        {
                            continue;
                        }

                        switch (value)
                        {
                            case null: json.WriteNull(key); break;
                            case bool b: json.WriteBoolean(key, b); break;
                            case int i: json.WriteNumber(key, i); break;
                            case long l: json.WriteNumber(key, l); break;
                            case double d: json.WriteNumber(key, d); break;
                            case decimal m: json.WriteNumber(key, m); break;
                            default: json.WriteString(key, Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture)); break;
                        }
                    }
                }

                json.WriteString("message", formatter(state, exception));
                json.WriteEndObject();
            }

            owner._queue.Writer.TryWrite(Encoding.UTF8.GetString(buffer.WrittenSpan));
        }
    }

    private sealed class NullLogger : ILogger
    {
        public static readonly NullLogger Instance = new();

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => false;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
        }
    }
}
