using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>
/// Admissions and settlements on Redis Cluster, where a script may touch one hash slot only. Every scope of a call —
/// the user, the team period, the run, the gateway key's rate window — has its keys in one slot (hash tags
/// <c>{u:…}</c>, <c>{t:…}</c>, <c>{r:…}</c>, <c>{k:…}</c>), and is decided by a step of its own
/// (<see cref="RedisAdmissionScripts.ReserveScoped"/>). A batch's steps go out as one script per slot, all at once
/// (one round trip; the slots' nodes work in parallel).
/// </summary>
/// <remarks>
/// <para>A call whose steps all held is admitted. When a step refuses, the call is refused with the failing check of
/// lowest rank (exactly the refusal of the one-script path), and the steps that held are undone
/// (<see cref="RedisAdmissionScripts.FinishScoped"/>, mode 2). Each scope is checked and held atomically on its own, so
/// spend never passes a limit; what a refused call held between its step and the undo (one round trip) can only make
/// a concurrent call on that scope see less room than there is: a false refusal, never an overspend.</para>
/// <para>Within one replica's batch, decisions are exactly those of one call at a time in queue order: a later call of
/// the batch that shares a scope with an undone step (it saw that hold) is undone as well and decided again, after the
/// undo, in the next round; calls that share no such scope commute with it. Across replicas there is no queue order,
/// and the false refusal above is possible.</para>
/// <para>A step whose node fails (down, MOVED the client could not follow, OOM, …) fails its call alone: that call's
/// held steps are undone, it reports the store unavailable, and calls on other slots go on.</para>
/// </remarks>
internal sealed partial class RedisAdmissionStore
{
    /// <summary>Scope steps: the user, the team period, the run, the gateway key's window.</summary>
    private const int UserScope = 1, TeamScope = 2, RunScope = 3, KeyScope = 4;

    private const int UndoMode = 2;

    /// <summary>0 not known yet, 1 a single Redis (or Sentinel), 2 a Redis Cluster.</summary>
    private int _topology;

    /// <summary>The cluster's key-to-slot function (CRC16 of the hash tag), once connected.</summary>
    private Func<RedisKey, int>? _hashSlot;

    /// <summary>Scope steps undone after another scope refused (tests and the bench report it).</summary>
    private long _undoneSteps;

    /// <summary>Calls decided again because an earlier call of their batch was undone on a scope they share.</summary>
    private long _redecided;

    internal long UndoneSteps => Interlocked.Read(ref _undoneSteps);

    internal long Redecided => Interlocked.Read(ref _redecided);

    /// <summary>Whether the connection is to a Redis Cluster, as the multiplexer found once a server answered.</summary>
    internal async ValueTask<bool> IsClusterAsync()
    {
        var known = Volatile.Read(ref _topology);
        if (known != 0)
        {
            return known == 2;
        }

        var multiplexer = await _redis.ConnectAsync().WaitAsync(_timeout).ConfigureAwait(false);
        foreach (var endpoint in multiplexer.GetEndPoints())
        {
            var server = multiplexer.GetServer(endpoint);
            if (server.IsConnected)
            {
                var cluster = server.ServerType == ServerType.Cluster;
                _hashSlot = multiplexer.HashSlot;
                Volatile.Write(ref _topology, cluster ? 2 : 1);
                return cluster;
            }
        }

        return false;
    }

    private static (int Offset, int Count) ScopeKeys(int scope) => scope switch
    {
        UserScope => (0, 4),
        TeamScope => (4, 2),
        RunScope => (6, 2),
        _ => (8, 1),
    };

    /// <summary>The scopes a call touches, in step order.</summary>
    private static int Scopes(RedisReservation held, Span<int> scopes)
    {
        var count = 0;
        scopes[count++] = UserScope;
        if (held.HasTeam)
        {
            scopes[count++] = TeamScope;
        }

        if (held.HasRun)
        {
            scopes[count++] = RunScope;
        }

        if (held.HasKeyRate)
        {
            scopes[count++] = KeyScope;
        }

        return count;
    }

    private async Task<RedisResult> SendScopedReservesAsync(List<PendingCall> batch)
    {
        var replies = new RedisResult[batch.Count * ReserveReplyLength];
        var pending = new List<int>(batch.Count);
        for (var i = 0; i < batch.Count; i++)
        {
            pending.Add(i);
        }

        var scopes = new int[4];
        while (pending.Count > 0)
        {
            var steps = new SlotSteps(this);
            foreach (var index in pending)
            {
                var item = batch[index];
                var count = Scopes(item.Held, scopes);
                for (var s = 0; s < count; s++)
                {
                    steps.Add(index, scopes[s], item.Held, [item.Numbers, item.Held.RequestHash, item.User, item.Held.ExpiryField, item.Held.WindowField]);
                }
            }

            var outcome = await steps.SendAsync(RedisAdmissionScripts.ReserveScoped, RedisAdmissionScripts.ScopedReplyLength).ConfigureAwait(false);

            // Decide in queue order; a call on a scope where an earlier call of this round is undone saw that hold.
            var tainted = new HashSet<string>(StringComparer.Ordinal);
            var undo = new SlotSteps(this);
            var again = new List<int>();
            foreach (var index in pending)
            {
                var item = batch[index];
                var mine = outcome.Of(index);
                var seenUndone = false;
                foreach (var step in mine)
                {
                    seenUndone |= tainted.Contains(step.Scope);
                }

                long[]? refusal = null;
                Exception? failure = null;
                foreach (var step in mine)
                {
                    if (step.Failure is not null)
                    {
                        failure ??= step.Failure;
                    }
                    else if (step.Reply[0] > 0 && (refusal is null || step.Reply[0] < refusal[0]))
                    {
                        refusal = step.Reply;
                    }
                }

                var admitted = !seenUndone && failure is null && refusal is null;
                if (!admitted)
                {
                    foreach (var step in mine)
                    {
                        if (step.Failure is null && step.Reply[0] == 0)
                        {
                            undo.Add(index, step.ScopeKind, item.Held, [FinishNumbers(item.Held, UndoMode, 0, 0), item.Held.RequestHash, item.Held.ExpiryField, item.Held.WindowField]);
                            tainted.Add(step.Scope);
                            Interlocked.Increment(ref _undoneSteps);
                        }
                    }
                }

                if (seenUndone)
                {
                    foreach (var step in mine)
                    {
                        tainted.Add(step.Scope);
                    }

                    again.Add(index);
                    Interlocked.Increment(ref _redecided);
                    continue;
                }

                item.Failure = failure;
                Answer(replies, index, mine, failure is null ? refusal : null, failure is not null);
            }

            if (undo.Count > 0)
            {
                // Given back before anything else is decided; a failed undo's holds expire at their TTL.
                await undo.SendAsync(RedisAdmissionScripts.FinishScoped, 0).ConfigureAwait(false);
            }

            pending = again;
        }

        return RedisResult.Create(replies);
    }

    /// <summary>One call's answer in <see cref="RedisAdmissionScripts.Reserve"/>'s layout, built from its steps.</summary>
    private static void Answer(RedisResult[] replies, int index, List<StepReply> steps, long[]? refusal, bool failed)
    {
        Span<long> answer = stackalloc long[ReserveReplyLength];
        answer[11] = -1;
        answer[14] = -1;
        answer[0] = failed ? -1 : refusal is null ? 1 : 0;
        answer[5] = -1;
        if (refusal is not null)
        {
            refusal.AsSpan(1, 5).CopyTo(answer[1..]);
        }

        foreach (var step in steps)
        {
            if (step.Failure is not null)
            {
                continue;
            }

            var reply = step.Reply;
            switch (step.ScopeKind)
            {
                case UserScope:
                    answer[6] = reply[6];
                    reply.AsSpan(7, 3).CopyTo(answer[9..]);
                    break;
                case TeamScope:
                    answer[7] = reply[6];
                    break;
                case RunScope:
                    answer[8] = reply[6];
                    break;
                default:
                    reply.AsSpan(7, 3).CopyTo(answer[12..]);
                    break;
            }
        }

        for (var i = 0; i < ReserveReplyLength; i++)
        {
            replies[(index * ReserveReplyLength) + i] = RedisResult.Create(answer[i]);
        }
    }

    private async Task<RedisResult> SendScopedFinishesAsync(List<PendingCall> batch)
    {
        var steps = new SlotSteps(this);
        var scopes = new int[4];
        for (var index = 0; index < batch.Count; index++)
        {
            var item = batch[index];
            var count = Scopes(item.Held, scopes);
            for (var s = 0; s < count; s++)
            {
                steps.Add(index, scopes[s], item.Held, [item.Numbers, item.Held.RequestHash, item.Held.ExpiryField, item.Held.WindowField]);
            }
        }

        var outcome = await steps.SendAsync(RedisAdmissionScripts.FinishScoped, 0).ConfigureAwait(false);
        for (var index = 0; index < batch.Count; index++)
        {
            foreach (var step in outcome.Of(index))
            {
                batch[index].Failure ??= step.Failure;
            }
        }

        return RedisResult.Create(batch.Count);
    }

    /// <summary>A step's reply (null on failure), its scope kind and its scope's identity (its first key).</summary>
    private sealed record StepReply(int ScopeKind, string Scope, long[] Reply, Exception? Failure);

    /// <summary>Steps grouped by hash slot, in call order within each slot: one script per slot, sent together.</summary>
    private sealed class SlotSteps(RedisAdmissionStore store)
    {
        private readonly Dictionary<int, Slot> _slots = [];
        private int _count;

        public int Count => _count;

        public void Add(int call, int scope, RedisReservation held, RedisValue[] args)
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

            group.Args.Add(scope);
            group.Args.AddRange(args);
            group.Steps.Add((call, scope, (string)first!));
            _count++;
        }

        /// <summary>Sends every slot's script at once, each bounded by the store timeout from when it is sent.</summary>
        public async Task<Outcome> SendAsync(LlmGateway.Redis.RedisScript script, int replyLength)
        {
            var groups = _slots.Values.ToArray();
            var sends = new Task<RedisResult>[groups.Length];
            for (var i = 0; i < groups.Length; i++)
            {
                sends[i] = store._redis.EvaluateAsync(script, [.. groups[i].Keys], [.. groups[i].Args]).WaitAsync(store._timeout);
            }

            var outcome = new Outcome();
            for (var i = 0; i < groups.Length; i++)
            {
                long[]? reply = null;
                Exception? failure = null;
                try
                {
                    reply = replyLength > 0 ? (long[])(await sends[i].ConfigureAwait(false))! : [];
                    if (replyLength > 0 && reply.Length != groups[i].Steps.Count * replyLength)
                    {
                        failure = new RedisException($"{script.Name} answered {reply.Length} numbers for {groups[i].Steps.Count} steps");
                    }
                }
                catch (Exception exception)
                {
                    LlmGateway.Redis.RedisConnection.Observe(sends[i]);
                    failure = exception;
                }

                for (var s = 0; s < groups[i].Steps.Count; s++)
                {
                    var (call, scope, name) = groups[i].Steps[s];
                    outcome.Add(call, new StepReply(scope, name, failure is null && replyLength > 0 ? reply!.AsSpan(s * replyLength, replyLength).ToArray() : [], failure));
                }
            }

            return outcome;
        }

        private int SlotOf(RedisKey key) => store._hashSlot?.Invoke(key) ?? 0;

        private sealed class Slot
        {
            public List<RedisKey> Keys { get; } = [];

            public List<RedisValue> Args { get; } = [];

            public List<(int Call, int Scope, string Name)> Steps { get; } = [];
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
