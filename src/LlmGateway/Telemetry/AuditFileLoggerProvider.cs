using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Telemetry;

/// <summary>
/// Writes the <see cref="AuditLog.Category"/> records, one JSON object per line, to a file (appended) through an
/// <see cref="AuditFileWriter"/>: a bounded queue and one background task, so the request path never waits on the
/// disk. A record that finds the queue full is dropped and counted (<c>llm_gateway_audit_dropped_total</c>); a disk
/// error is logged once and retried. On shutdown the queue is drained.
/// </summary>
internal sealed class AuditFileLoggerProvider : ILoggerProvider
{
    public AuditFileLoggerProvider(string path, int capacity = AuditFileWriter.DefaultCapacity, TimeProvider? time = null)
    {
        Writer = new AuditFileWriter(path, capacity, time);
    }

    public AuditFileWriter Writer { get; }

    public string Path => Writer.Path;

    /// <summary>Records never written (see <see cref="AuditFileWriter.Dropped"/>).</summary>
    public long Dropped => Writer.Dropped;

    public ILogger CreateLogger(string categoryName) => categoryName == AuditLog.Category ? new AuditLogger(this) : NullLogger.Instance;

    public void Dispose() => Writer.Dispose();

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

            owner.Writer.TryWrite(buffer.WrittenSpan.ToArray());
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
