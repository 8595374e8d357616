using StackExchange.Redis;

namespace LlmGateway.Redis;

/// <summary>
/// Group commit of one kind of script call: a call goes to Redis at once when none of its kind is in flight, else it
/// waits and goes with every call that queued meanwhile, in one script, as soon as the one in flight answers. At low
/// load every script carries one call and nothing waits; under load one script carries many (its fixed cost, and the
/// reads and writes of scopes the calls share, paid once). Each caller gets the whole batch's reply.
/// </summary>
/// <typeparam name="T">The calls; the sender writes them into one script and returns its reply.</typeparam>
internal sealed class ScriptGroupCommit<T>(int maxBatch, Func<List<T>, Task<RedisResult>> send)
    where T : ScriptGroupCommit<T>.Call
{
    private readonly Lock _lock = new();
    private readonly List<T> _pending = [];
    private bool _sending;

    /// <summary>Queues a call; its <see cref="PendingReply.Done"/> completes with its batch's reply.</summary>
    public Task<RedisResult> Enqueue(T call)
    {
        List<T>? batch = null;
        lock (_lock)
        {
            _pending.Add(call);
            if (!_sending)
            {
                _sending = true;
                batch = Take();
            }
        }

        if (batch is not null)
        {
            _ = SendAsync(batch);
        }

        return call.Done.Task;
    }

    private async Task SendAsync(List<T> batch)
    {
        RedisResult? reply = null;
        Exception? failure = null;
        if (batch.Count > 0)
        {
            try
            {
                reply = await send(batch).ConfigureAwait(false);
            }
            catch (Exception exception)
            {
                failure = exception;
            }
        }

        // The next batch goes out before this one's callers go on with their requests.
        List<T>? next = null;
        lock (_lock)
        {
            if (_pending.Count == 0)
            {
                _sending = false;
            }
            else
            {
                next = Take();
            }
        }

        if (next is not null)
        {
            _ = SendAsync(next);
        }

        if (failure is not null)
        {
            foreach (var call in batch)
            {
                call.Done.TrySetException(failure);
                RedisConnection.Observe(call.Done.Task);
            }

            return;
        }

        foreach (var call in batch)
        {
            call.Reply = reply!;
        }

        PendingReply.HandOff(batch);
    }

    /// <summary>Up to <c>maxBatch</c> queued calls, oldest first, leaving out those abandoned before being sent. Under the lock.</summary>
    private List<T> Take()
    {
        var batch = new List<T>(Math.Min(_pending.Count, maxBatch));
        var taken = 0;
        while (taken < _pending.Count && batch.Count < maxBatch)
        {
            var call = _pending[taken++];
            if (!call.Abandoned)
            {
                call.Index = batch.Count;
                batch.Add(call);
            }
        }

        _pending.RemoveRange(0, taken);
        return batch;
    }

    /// <summary>A call waiting for its batch.</summary>
    public abstract class Call : PendingReply
    {
        /// <summary>Its place in the batch it was sent in (where its answer is in a reply that has one per call).</summary>
        public int Index { get; set; }

        /// <summary>Its caller gave up before it was sent: it never will be.</summary>
        public volatile bool Abandoned;
    }
}
