using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Caching;

/// <summary>How the cache and replay take part in one call; see <see cref="ResponseCache"/>.</summary>
internal sealed class CachedCall : IAsyncDisposable
{
    /// <summary>For calls the cache and replay take no part in.</summary>
    public static readonly CachedCall None = new(null, null!, null!, null!);

    private readonly ResponseCache? _owner;

    public CachedCall(ResponseCache? owner, HttpContext context, LlmCall call, CacheOptions options)
    {
        _owner = owner;
        Context = context;
        Call = call;
        Options = options;
    }

    public HttpContext Context { get; }

    public LlmCall Call { get; }

    public CacheOptions Options { get; }

    /// <summary>A caller mistake in the cache/replay headers, or a replay miss: answered instead of the call.</summary>
    public GatewayError? Error { get; set; }

    /// <summary>The hit or replayed step that answers this call.</summary>
    public CachedAnswer? Answer { get; set; }

    /// <summary>The X-Gateway-Cache response header: HIT, MISS or BYPASS (null when the cache is off).</summary>
    public string? Result { get; set; }

    public int ReplayStep { get; set; }

    public string? Key { get; set; }

    /// <summary>The model the key was computed for; only its answers are stored under the key.</summary>
    public string? KeyModel { get; set; }

    public bool Store { get; set; }

    public TimeSpan Ttl { get; set; }

    public TaskCompletionSource<CachedAnswer?>? Flight { get; set; }

    public ResponseCapture? Capture { get; set; }

    public string? RecordRunId { get; set; }

    public string? RequestHash { get; set; }

    public byte[]? RequestBody { get; set; }

    /// <summary>Admitted without reserving cost or tokens (it still counts as a request): a replayed step, or a hit unless Gateway:Cache:ChargeHits.</summary>
    public bool IsFree => Answer is not null && (ReplayStep > 0 || !Options.ChargeHits);

    public ValueTask<bool> TryServeAsync() => _owner is null ? ValueTask.FromResult(false) : _owner.ServeAsync(this);

    public ValueTask DisposeAsync() => _owner is null ? ValueTask.CompletedTask : _owner.CompleteAsync(this);
}
