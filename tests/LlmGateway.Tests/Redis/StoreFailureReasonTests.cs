using LlmGateway.Budgets;
using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Tests.Redis;

public sealed class StoreFailureReasonTests
{
    [Fact]
    public void TooFewReplicas_IsReplicas_WhereverItIsInTheCauses()
    {
        var unreplicated = new RedisReplicationTimeoutException(RedisResult.Create(1), 0, 1, 50, null);

        Assert.Equal("replicas", StoreFailureReason.Of(unreplicated));
        Assert.Equal("replicas", StoreFailureReason.Of(new AdmissionStoreUnavailableException("Redis could not decide reserve", unreplicated)));
    }

    [Fact]
    public void NoAnswerInTime_IsTimeout_AnythingElseIsError()
    {
        Assert.Equal("timeout", StoreFailureReason.Of(new AdmissionStoreUnavailableException("Redis did not answer", new TimeoutException())));
        Assert.Equal("error", StoreFailureReason.Of(new AdmissionStoreUnavailableException("Redis did not answer",
            new RedisConnectionException(ConnectionFailureType.SocketFailure, CommandFlags.None, "socket closed"))));
        Assert.Equal("error", StoreFailureReason.Of(new InvalidOperationException("no cause")));
    }
}
