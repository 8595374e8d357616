namespace LlmGateway.Accounting;

/// <summary>
/// Token counts of one call. <see cref="CachedInputTokens"/> (cache reads) and <see cref="CacheWriteTokens"/> (Anthropic's
/// cache writes) are part of <see cref="InputTokens"/>, and <see cref="ReasoningTokens"/> part of <see cref="OutputTokens"/>,
/// as in OpenAI's usage objects; Anthropic's usage, whose input_tokens excludes both cache figures, is summed into this form.
/// </summary>
internal readonly record struct TokenUsage(long InputTokens, long CachedInputTokens, long OutputTokens, long ReasoningTokens, long CacheWriteTokens = 0)
{
    public long TotalTokens => InputTokens + OutputTokens;

    /// <summary>Input read neither from nor into the provider's prompt cache.</summary>
    public long UncachedInputTokens => Math.Max(0, InputTokens - CachedInputTokens - CacheWriteTokens);
}
