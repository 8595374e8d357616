using System.Collections;
using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Exporter;

namespace LlmGateway.EndToEnd.Tests.Tracing;

/// <summary>
/// What OpenTelemetry's in-memory exporter received from a gateway hosted in this process. The gateway's tracer provider
/// listens to every "LlmGateway" span of the process, other tests' gateways included: read spans by trace id.
/// </summary>
internal sealed class SpanCollector : ICollection<Activity>
{
    private readonly ConcurrentQueue<Activity> _spans = new();

    public int Count => _spans.Count;

    public bool IsReadOnly => false;

    /// <summary>Registers the in-memory exporter as a span processor of the gateway (OtlpTraceExport adds it).</summary>
    public void Register(IServiceCollection services) =>
        services.AddSingleton<BaseProcessor<Activity>>(new SimpleActivityExportProcessor(new InMemoryExporter<Activity>(this)));

    public IReadOnlyList<Activity> InTrace(ActivityTraceId traceId) => _spans.Where(s => s.TraceId == traceId).ToList();

    public void Add(Activity item) => _spans.Enqueue(item);

    public void Clear() => throw new NotSupportedException();

    public bool Contains(Activity item) => _spans.Contains(item);

    public void CopyTo(Activity[] array, int arrayIndex) => _spans.ToArray().CopyTo(array, arrayIndex);

    public bool Remove(Activity item) => throw new NotSupportedException();

    public IEnumerator<Activity> GetEnumerator() => _spans.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
