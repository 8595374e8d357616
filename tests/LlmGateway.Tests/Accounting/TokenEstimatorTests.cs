using LlmGateway.Accounting;

namespace LlmGateway.Tests.Accounting;

public sealed class TokenEstimatorTests
{
    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 1)]
    [InlineData(4, 1)]
    [InlineData(5, 2)]
    [InlineData(4000, 1000)]
    public void FromTextBytes_RoundsUp(long bytes, long tokens) => Assert.Equal(tokens, TokenEstimator.FromTextBytes(bytes));

    [Fact]
    public void Prompt_AddsFramingPerMessage() => Assert.Equal(100 + (3 * TokenEstimator.TokensPerMessage), TokenEstimator.Prompt(400, 3));
}
