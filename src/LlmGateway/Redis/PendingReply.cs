using StackExchange.Redis;

namespace LlmGateway.Redis;

/// <summary>
/// A caller waiting for a Redis reply. Replies that arrive together are handed over by <see cref="HandOff{T}"/>: each
/// caller goes on with its request, so how they are resumed decides how long the thread handing them over is held.
/// </summary>
internal class PendingReply : IThreadPoolWorkItem
{
    /// <summary>Completed by <see cref="HandOff{T}"/> (or failed by whoever gives up the call).</summary>
    public TaskCompletionSource<RedisResult> Done { get; } = new();

    /// <summary>The reply to hand over.</summary>
    public RedisResult Reply { get; set; } = RedisResult.Create(RedisValue.Null);

    /// <summary>
    /// Completes every caller with its <see cref="Reply"/>: all but the last from the thread pool, so no caller's work
    /// holds back the others, and the last on this thread (a reply alone, as at low load, wakes no other thread).
    /// </summary>
    public static void HandOff<T>(List<T> ready)
        where T : PendingReply
    {
        for (var i = 0; i < ready.Count - 1; i++)
        {
            ThreadPool.UnsafeQueueUserWorkItem(ready[i], preferLocal: false);
        }

        if (ready.Count > 0)
        {
            ready[^1].Done.TrySetResult(ready[^1].Reply);
        }
    }

    void IThreadPoolWorkItem.Execute() => Done.TrySetResult(Reply);
}
