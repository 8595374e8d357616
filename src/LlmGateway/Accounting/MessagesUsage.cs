namespace LlmGateway.Accounting;

/// <summary>
/// Anthropic's usage object as reported, each figure with whether it was there: a stream's usage is message_start's,
/// updated by each message_delta's cumulative figures, and a delta that omits one leaves it as it was.
/// </summary>
/// <remarks>Anthropic's <c>input_tokens</c> excludes cache reads and cache writes; <see cref="ToTokenUsage"/> sums them.</remarks>
internal struct MessagesUsage
{
    public long? Input;
    public long? CacheRead;
    public long? CacheWrite;
    public long? Output;

    /// <summary>Takes every figure <paramref name="later"/> carries.</summary>
    public void Update(in MessagesUsage later)
    {
        Input = later.Input ?? Input;
        CacheRead = later.CacheRead ?? CacheRead;
        CacheWrite = later.CacheWrite ?? CacheWrite;
        Output = later.Output ?? Output;
    }

    public readonly TokenUsage ToTokenUsage()
    {
        var read = CacheRead ?? 0;
        var write = CacheWrite ?? 0;
        return new TokenUsage((Input ?? 0) + read + write, read, Output ?? 0, 0, write);
    }
}
