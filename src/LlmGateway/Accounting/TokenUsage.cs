namespace LlmGateway.Accounting;

/// <summary>
/// Token counts of one call. <see cref="CachedInputTokens"/> is part of <see cref="InputTokens"/> and
/// <see cref="ReasoningTokens"/> part of <see cref="OutputTokens"/>, as in OpenAI's usage objects.
/// </summary>
internal readonly record struct TokenUsage(long InputTokens, long CachedInputTokens, long OutputTokens, long ReasoningTokens)
{
    public long TotalTokens => InputTokens + OutputTokens;
}
