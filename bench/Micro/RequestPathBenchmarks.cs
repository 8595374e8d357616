using BenchmarkDotNet.Attributes;
using LlmGateway.Accounting;
using LlmGateway.Configuration;
using LlmGateway.Forwarding;
using LlmGateway.Identity;

namespace LlmGateway.Benchmarks;

/// <summary>The CPU-bound steps every non-streamed call goes through, one benchmark each.</summary>
[MemoryDiagnoser]
public class RequestPathBenchmarks
{
    private readonly byte[] _request = Payloads.ChatRequest;
    private readonly byte[] _request100K = Payloads.ChatRequestOfSize(100 * 1024);
    private readonly byte[] _response = Payloads.ChatResponse;
    private readonly TokenUsage _usage = new(InputTokens: 182, CachedInputTokens: 64, OutputTokens: 41, ReasoningTokens: 0);
    private readonly ModelPrices _prices = new(2.50m, 1.25m, 10.00m);
    private readonly GatewayConfig _config = new(new GatewayOptions
    {
        Providers = { ["p"] = new ProviderOptions { BaseUrl = "http://127.0.0.1:1/v1" } },
        Models = { ["bench-model"] = new ModelOptions { Provider = "p", InputUsdPerMTok = 1, OutputUsdPerMTok = 2 } },
        Keys = { new KeyOptions { Key = "sk-bench-0123456789abcdef", User = "bench" } },
    }, "bench");

    [Benchmark(Description = "LlmRequestInfo.TryParse (0.9 KB body)")]
    public string? ParseRequest() => LlmRequestInfo.TryParse(_request, out _, out _);

    [Benchmark(Description = "LlmRequestInfo.TryParse (100 KB body)")]
    public string? ParseRequest100K() => LlmRequestInfo.TryParse(_request100K, out _, out _);

    [Benchmark(Description = "UsageReader.TryRead (whole JSON response)")]
    public bool ReadResponseUsage() => UsageReader.TryRead(_response, out _);

    [Benchmark(Description = "CostCalculator.Cost")]
    public decimal Cost() => CostCalculator.Cost(_usage, _prices);

    [Benchmark(Description = "RequestBodyRewriter.Rewrite (model + include_usage)")]
    public byte[] Rewrite() => RequestBodyRewriter.Rewrite(_request, "bench-upstream-model", forceIncludeUsage: true);

    [Benchmark(Description = "Key SHA-256 + lookup")]
    public bool Authenticate()
    {
        Span<byte> digest = stackalloc byte[32];
        KeyHashing.Sha256("sk-bench-0123456789abcdef", digest);
        return _config.TryGetKey(new Sha256Key(digest), out _);
    }
}
