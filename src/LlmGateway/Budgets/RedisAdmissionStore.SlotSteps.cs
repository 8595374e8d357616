using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>The steps of a cluster batch, grouped per hash slot, and their replies.</summary>
internal sealed partial class RedisAdmissionStore
{
    /// <summary>A step's reply (null on failure), its scope kind and its scope's identity (its first key).</summary>
    private sealed record StepReply(int ScopeKind, string Scope, long[] Reply, Exception? Failure);

    /// <summary>A step as sent: its call, scope kind and identity, the reservation it is for, and whether it admits.</summary>
    private sealed record SlotStep(int Call, int Scope, string Name, RedisReservation Held, bool Reserve);

    /// <summary>Steps grouped by hash slot, in call order within each slot: one script per slot, sent together.</summary>
    private sealed class SlotSteps(RedisAdmissionStore store)
    {
        private readonly Dictionary<int, Slot> _slots = [];
        private int _count;

        public int Count => _count;

        /// <summary>
        /// A step of scope <paramref name="scope"/>; its first argument is the scope, or <paramref name="kind"/> if given.
        /// <paramref name="reserve"/>: an admission step, undone if its script times out and then holds.
        /// </summary>
        public void Add(int call, int scope, RedisReservation held, RedisValue[] args, int? kind = null, bool reserve = false)
        {
            var (offset, count) = ScopeKeys(scope);
            var first = held.Keys[offset];
            var slot = SlotOf(first);
            if (!_slots.TryGetValue(slot, out var group))
            {
                _slots[slot] = group = new Slot();
            }

            for (var i = 0; i < count; i++)
            {
                group.Keys.Add(held.Keys[offset + i]);
            }

            group.Args.Add(kind ?? scope);
            group.Args.AddRange(args);
            group.Steps.Add(new SlotStep(call, scope, (string)first!, held, reserve));
            _count++;
        }

        /// <summary>Sends every slot's script at once, each bounded by the store timeout from when it is sent.</summary>
        public async Task<Outcome> SendAsync(LlmGateway.Redis.RedisScript script, int replyLength)
        {
            var groups = _slots.Values.ToArray();
            var calls = await store._redis.EvaluateAllAsync(script, [.. groups.Select(static g => g.Keys.ToArray())], [.. groups.Select(static g => g.Args.ToArray())]).ConfigureAwait(false);
            var sends = new Task<RedisResult>[groups.Length];
            for (var i = 0; i < groups.Length; i++)
            {
                sends[i] = calls[i].WaitAsync(store._timeout);
            }

            var outcome = new Outcome();
            for (var i = 0; i < groups.Length; i++)
            {
                long[]? reply = null;
                Exception? failure = null;
                try
                {
                    var result = await sends[i].ConfigureAwait(false);
                    reply = replyLength > 0 ? (long[])result! : [];
                    if (replyLength > 0 && reply.Length != groups[i].Steps.Count * replyLength)
                    {
                        failure = new RedisException($"{script.Name} answered {reply.Length} numbers for {groups[i].Steps.Count} steps");
                    }
                }
                catch (Exception exception)
                {
                    LlmGateway.Redis.RedisConnection.Observe(sends[i]);
                    failure = exception;
                    if (exception is TimeoutException)
                    {
                        // Redis slow, not gone: the script may still run, and its admissions are then undone.
                        store.UndoWhenAnswered(calls[i], groups[i].Steps, replyLength);
                    }
                }

                for (var s = 0; s < groups[i].Steps.Count; s++)
                {
                    var step = groups[i].Steps[s];
                    outcome.Add(step.Call, new StepReply(step.Scope, step.Name, failure is null && replyLength > 0 ? reply!.AsSpan(s * replyLength, replyLength).ToArray() : [], failure));
                }
            }

            return outcome;
        }

        /// <summary>On a single Redis every step goes in one script (no slot rule to keep).</summary>
        private int SlotOf(RedisKey key) => Volatile.Read(ref store._topology) == 2 ? store._hashSlot?.Invoke(key) ?? 0 : 0;

        private sealed class Slot
        {
            public List<RedisKey> Keys { get; } = [];

            public List<RedisValue> Args { get; } = [];

            public List<SlotStep> Steps { get; } = [];
        }
    }

    /// <summary>Each call's step replies.</summary>
    private sealed class Outcome
    {
        private readonly Dictionary<int, List<StepReply>> _byCall = [];

        public void Add(int call, StepReply reply)
        {
            if (!_byCall.TryGetValue(call, out var list))
            {
                _byCall[call] = list = [];
            }

            list.Add(reply);
        }

        public List<StepReply> Of(int call) => _byCall.TryGetValue(call, out var list) ? list : [];
    }
}
