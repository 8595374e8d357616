using System.Security.Cryptography;
using System.Text;
using LlmGateway.Tracing;

namespace LlmGateway.Tests.Tracing;

public sealed class RunTraceIdsTests
{
    [Theory]
    [InlineData("run-1")]
    [InlineData("agent:2026-12-03T18.00_ä")]
    public void For_IsTheFirst16BytesOfSha256OfTheRunId(string runId)
    {
        var expected = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(runId)).AsSpan(0, 16));

        Assert.Equal(expected, RunTraceIds.For(runId).ToHexString());
    }

    [Fact]
    public void For_TellsRunsApart_AndIsStable()
    {
        Assert.Equal(RunTraceIds.For("run-a"), RunTraceIds.For("run-a"));
        Assert.NotEqual(RunTraceIds.For("run-a"), RunTraceIds.For("run-b"));
    }

    [Fact]
    public void For_TheLongestRunId_FitsItsStackBuffer()
    {
        var longest = new string('x', LlmGateway.Identity.CallerAuthenticator.MaxRunIdLength);

        Assert.Equal(32, RunTraceIds.For(longest).ToHexString().Length);
    }
}
