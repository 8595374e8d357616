using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>One log record as the gateway wrote it: the structured fields and the rendered message.</summary>
public sealed record CapturedLog(string Category, LogLevel Level, int EventId, string? EventName, string Message, IReadOnlyDictionary<string, object?> Fields, string? Exception)
{
    public string? Field(string name) => Fields.TryGetValue(name, out var value) ? Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) : null;
}

/// <summary>A logger provider that keeps every record in memory, so tests can read the gateway's call log.</summary>
public sealed class CapturedLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<CapturedLog> _records = new();

    public IReadOnlyList<CapturedLog> All => _records.ToArray();

    public IReadOnlyList<CapturedLog> Calls => _records.Where(r => r.EventName == "LlmCall").ToArray();

    public CapturedLog? CallFor(string requestId) => Calls.FirstOrDefault(r => r.Field("RequestId") == requestId);

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, this);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, CapturedLogs owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var fields = new Dictionary<string, object?>(StringComparer.Ordinal);
            if (state is IEnumerable<KeyValuePair<string, object?>> pairs)
            {
                foreach (var (key, value) in pairs)
                {
                    fields[key] = value;
                }
            }

            owner._records.Enqueue(new CapturedLog(category, logLevel, eventId.Id, eventId.Name, formatter(state, exception), fields, exception?.ToString()));
        }
    }
}
