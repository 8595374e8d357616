using BenchmarkDotNet.Attributes;
using LlmGateway.Accounting;

namespace LlmGateway.Benchmarks;

/// <summary>SSE usage extraction: run once per event of every streamed answer.</summary>
[MemoryDiagnoser]
public class StreamBenchmarks
{
    private readonly byte[] _contentChunk = Payloads.ContentChunk;
    private readonly byte[] _usageChunk = Payloads.UsageChunk;

    [Benchmark(Description = "UsageReader.TryRead (content chunk)")]
    public bool ContentChunk() => UsageReader.TryRead(_contentChunk, out _);

    [Benchmark(Description = "UsageReader.TryRead (usage chunk)")]
    public bool UsageChunk() => UsageReader.TryRead(_usageChunk, out _);
}
