using LlmGateway.Accounting;

namespace LlmGateway.Tests.Accounting;

public sealed class TokenizerKindTests
{
    [Theory]
    [InlineData("gpt-4o", "o200k_base")]
    [InlineData("gpt-4o-mini", "o200k_base")]
    [InlineData("gpt-4o-2024-08-06", "o200k_base")]
    [InlineData("GPT-4o", "o200k_base")]
    [InlineData("chatgpt-4o-latest", "o200k_base")]
    [InlineData("gpt-4.1", "o200k_base")]
    [InlineData("gpt-4.1-nano", "o200k_base")]
    [InlineData("gpt-4.5-preview", "o200k_base")]
    [InlineData("gpt-5", "o200k_base")]
    [InlineData("gpt-5-mini", "o200k_base")]
    [InlineData("o1", "o200k_base")]
    [InlineData("o1-mini", "o200k_base")]
    [InlineData("o3", "o200k_base")]
    [InlineData("o3-pro", "o200k_base")]
    [InlineData("o4-mini", "o200k_base")]
    [InlineData("openai/gpt-4o", "o200k_base")]
    [InlineData("ft:gpt-4o-mini:acme::abc123", "o200k_base")]
    [InlineData("gpt-4", "cl100k_base")]
    [InlineData("gpt-4-turbo", "cl100k_base")]
    [InlineData("gpt-4-0613", "cl100k_base")]
    [InlineData("gpt-3.5-turbo", "cl100k_base")]
    [InlineData("gpt-35-turbo", "cl100k_base")]
    [InlineData("text-embedding-3-small", "cl100k_base")]
    [InlineData("text-embedding-ada-002", "cl100k_base")]
    [InlineData("claude-sonnet-4", "bytes")]
    [InlineData("llama-3.1-70b", "bytes")]
    [InlineData("mock-small", "bytes")]
    [InlineData("omni-moderation-latest", "bytes")]
    [InlineData("o", "bytes")]
    [InlineData("", "bytes")]
    public void DefaultFor_FollowsTheModelName(string model, string expected) => Assert.Equal(expected, TokenizerNames.Name(TokenizerNames.DefaultFor(model)));

    [Theory]
    [InlineData("o200k_base", "o200k_base")]
    [InlineData("cl100k_base", "cl100k_base")]
    [InlineData("estimate", "estimate")]
    [InlineData("O200K_BASE", "o200k_base")]
    public void TryParse_KnowsTheThreeNames(string value, string expected)
    {
        Assert.True(TokenizerNames.TryParse(value, out var kind));
        Assert.Equal(expected, TokenizerNames.Name(kind));
    }

    [Theory]
    [InlineData("o200k")]
    [InlineData("tiktoken")]
    [InlineData("")]
    [InlineData(null)]
    public void TryParse_RejectsAnythingElse(string? value) => Assert.False(TokenizerNames.TryParse(value, out _));
}
