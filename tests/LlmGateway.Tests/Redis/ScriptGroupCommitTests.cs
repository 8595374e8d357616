using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Tests.Redis;

/// <summary>The batching logic alone, with a sender the test controls (the Redis side is in RedisAdmissionStoreTests).</summary>
public sealed class ScriptGroupCommitTests
{
    [Fact]
    public async Task FirstCallGoesAlone_CallsQueuedMeanwhileGoTogetherInOrder_AndAbandonedOnesAreLeftOut()
    {
        var sender = new Sender();
        var commit = new ScriptGroupCommit<Call>(maxBatch: 3, sender.SendAsync);
        var calls = Enumerable.Range(0, 6).Select(i => new Call(i)).ToList();

        var first = commit.Enqueue(calls[0]);
        var rest = calls.Skip(1).Select(commit.Enqueue).ToList();
        calls[2].Abandoned = true; // its caller gave up before it was sent
        Assert.Equal([[0]], sender.Batches);

        sender.Answer(0, RedisResult.Create((RedisValue)100));
        Assert.Equal(100, (long)await first);
        await sender.WaitForBatchesAsync(2);
        Assert.Equal([1, 3, 4], sender.Batches[1]); // at most 3, in order, without the abandoned one
        Assert.Equal([0, 1, 2], calls.Where(c => sender.Batches[1].Contains(c.Id)).Select(c => c.Index));

        sender.Answer(1, RedisResult.Create((RedisValue)101));
        await sender.WaitForBatchesAsync(3);
        Assert.Equal([5], sender.Batches[2]);
        sender.Answer(2, RedisResult.Create((RedisValue)102));
        Assert.Equal([101, 101, 101, 102], (await Task.WhenAll(rest[0], rest[2], rest[3], rest[4])).Select(r => (long)r));
        Assert.False(rest[1].IsCompleted); // never sent, never answered: its caller already gave up
    }

    [Fact]
    public async Task FailedBatch_FailsItsCallsOnly_AndTheNextBatchStillGoes()
    {
        var sender = new Sender();
        var commit = new ScriptGroupCommit<Call>(maxBatch: 10, sender.SendAsync);
        var first = commit.Enqueue(new Call(0));
        var second = commit.Enqueue(new Call(1));

        sender.Fail(0, new IOException("connection lost"));

        await Assert.ThrowsAsync<IOException>(() => first);
        sender.Answer(1, RedisResult.Create((RedisValue)7));
        Assert.Equal(7, (long)await second);
    }

    [Fact]
    public async Task NextBatchGoesOut_BeforeThisBatchsCallersGoOn()
    {
        var sender = new Sender();
        var commit = new ScriptGroupCommit<Call>(maxBatch: 10, sender.SendAsync);
        var first = commit.Enqueue(new Call(0));
        _ = commit.Enqueue(new Call(1));
        var batchesWhenTheFirstCallerWentOn = 0;
        var resumed = first.ContinueWith(_ => batchesWhenTheFirstCallerWentOn = sender.Batches.Count, TaskContinuationOptions.ExecuteSynchronously);

        sender.Answer(0, RedisResult.Create((RedisValue)1));
        await resumed;

        Assert.Equal(2, batchesWhenTheFirstCallerWentOn);
    }

    private sealed class Call(int id) : ScriptGroupCommit<Call>.Call
    {
        public int Id { get; } = id;
    }

    private sealed class Sender
    {
        private readonly List<TaskCompletionSource<RedisResult>> _replies = [];
        private int _sent;

        public List<int[]> Batches { get; } = [];

        /// <summary>
        /// The next batch goes out when the one in flight is answered: on the answering thread, except that xunit's
        /// synchronization context on the test thread makes the runtime queue the continuation instead of running it
        /// inline, so it may go a moment later (failed once in CI): wait for it (an event, not a time).
        /// </summary>
        public async Task WaitForBatchesAsync(int count)
        {
            for (var i = 0; i < 500 && Volatile.Read(ref _sent) < count; i++)
            {
                await Task.Delay(10);
            }

            Assert.True(Volatile.Read(ref _sent) >= count, $"{Volatile.Read(ref _sent)} batches sent, {count} expected");
        }

        public Task<RedisResult> SendAsync(List<Call> batch)
        {
            lock (Batches)
            {
                Batches.Add([.. batch.Select(c => c.Id)]);
            }

            var reply = new TaskCompletionSource<RedisResult>();
            lock (_replies)
            {
                _replies.Add(reply);
            }

            Interlocked.Increment(ref _sent);
            return reply.Task;
        }

        public void Answer(int batch, RedisResult reply) => Reply(batch).SetResult(reply);

        public void Fail(int batch, Exception exception) => Reply(batch).SetException(exception);

        private TaskCompletionSource<RedisResult> Reply(int batch)
        {
            lock (_replies)
            {
                return _replies[batch];
            }
        }
    }
}
