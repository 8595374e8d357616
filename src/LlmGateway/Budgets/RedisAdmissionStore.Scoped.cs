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

    /// <summary>The first check a hold can fail (the user's budget); those before it are halts, deadlines and the loop guard.</summary>
    private const int FirstTransientRank = 5;

    /// <summary>0 not known yet, 1 a single Redis (or Sentinel), 2 a Redis Cluster.</summary>
    private int _topology;

    /// <summary>The cluster's key-to-slot function (CRC16 of the hash tag), once connected.</summary>
    private Func<RedisKey, int>? _hashSlot;

    /// <summary>Scope steps undone after another scope refused (tests and the bench report it).</summary>
    private long _undoneSteps;

    /// <summary>Calls decided again because an earlier call of their batch was undone on a scope they share.</summary>
    private long _redecided;

    /// <summary>Refused calls tried a second time.</summary>
    private long _retried;

    internal long UndoneSteps => Interlocked.Read(ref _undoneSteps);

    internal long Retried => Interlocked.Read(ref _retried);

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

    /// <summary>Overrides what the multiplexer found (tests: the one-script path on a cluster must fail as unavailable).</summary>
    internal void AssumeTopology(bool cluster) => Volatile.Write(ref _topology, cluster ? 2 : 1);

    /// <summary>
    /// Loads the admission scripts on every connected primary (SCRIPT LOAD), so calls run them by SHA from the first;
    /// a server that restarts later loses them, and the first call after it sends the source again (NOSCRIPT).
    /// </summary>
    internal async Task LoadScriptsAsync()
    {
        var multiplexer = await _redis.ConnectAsync().ConfigureAwait(false);
        await IsClusterAsync().ConfigureAwait(false);
        var loads = new List<Task>();
        foreach (var endpoint in multiplexer.GetEndPoints())
        {
            var server = multiplexer.GetServer(endpoint);
            if (server.IsConnected && !server.IsReplica)
            {
                foreach (var script in RedisAdmissionScripts.All)
                {
                    loads.Add(server.ScriptLoadAsync(script.Source));
                }
            }
        }

        await Task.WhenAll(loads).ConfigureAwait(false);
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
        if (held.RunOnly)
        {
            scopes[0] = RunScope;
            return 1;
        }

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
                    steps.Add(index, scopes[s], item.Held, [item.Numbers, item.Held.RequestHash, item.User, item.Held.ExpiryField, item.Held.WindowField], reserve: true);
                }
            }

            var outcome = await steps.SendAsync(RedisAdmissionScripts.ReserveScoped, RedisAdmissionScripts.ScopedReplyLength).ConfigureAwait(false);

            // Decide in queue order. A step read its scope with the holds of the earlier calls of this round, some of
            // which are then undone (their call was refused elsewhere): what it reports is corrected by them, and
            // since a hold only ever adds refusals, its decision stands unless a check it failed may be one of those
            // holds' doing and comes first — then the call is decided again, after the undo, and so is every later
            // call on a scope of it (their order with it is kept).
            var undone = new Dictionary<string, Undone>(StringComparer.Ordinal);
            var again = new HashSet<string>(StringComparer.Ordinal);
            var undo = new SlotSteps(this);
            var next = new List<int>();
            var retries = new List<int>();
            foreach (var index in pending)
            {
                var item = batch[index];
                var mine = outcome.Of(index);
                var redo = false;
                long[]? refusal = null;
                var doubtful = long.MaxValue;
                Exception? failure = null;
                foreach (var step in mine)
                {
                    redo |= again.Contains(step.Scope);
                    if (step.Failure is not null)
                    {
                        failure ??= step.Failure;
                    }
                    else if (step.Reply[0] > 0)
                    {
                        if (undone.ContainsKey(step.Scope))
                        {
                            doubtful = Math.Min(doubtful, step.Reply[0]);
                        }
                        else if (refusal is null || step.Reply[0] < refusal[0])
                        {
                            refusal = step.Reply;
                        }
                    }
                }

                redo |= failure is null && doubtful < (refusal?[0] ?? long.MaxValue);
                if (!redo && (!item.Retried || (failure is null && refusal is null)))
                {
                    // A second chance that fails keeps the first answer: within this replica's order it was exact.
                    item.Failure = failure;
                    item.Answer = Answer(mine, refusal, failure is not null, undone);
                }

                if (!redo && refusal is not null && failure is null && refusal[0] >= FirstTransientRank && !item.Retried)
                {
                    // Refused by a limit (not a halt, deadline or loop guard): the room it lacked may have been held by
                    // another replica's call that a refusal elsewhere is undoing. One more try once this round's undo
                    // is done; it does not hold back later calls (nothing they do here can free what this one lacked).
                    item.Retried = true;
                    retries.Add(index);
                }

                if (redo || failure is not null || refusal is not null)
                {
                    foreach (var step in mine)
                    {
                        if (step.Failure is null && step.Reply[0] == 0)
                        {
                            undo.Add(index, step.ScopeKind, item.Held, [FinishNumbers(item.Held, UndoMode, 0, 0), item.Held.RequestHash, item.Held.ExpiryField, item.Held.WindowField, string.Empty, string.Empty]);
                            ref var total = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(undone, step.Scope, out _);
                            total = total.Add(item.Held);
                            Interlocked.Increment(ref _undoneSteps);
                        }
                    }
                }

                if (redo)
                {
                    foreach (var step in mine)
                    {
                        again.Add(step.Scope);
                    }

                    next.Add(index);
                    Interlocked.Increment(ref _redecided);
                }
            }

            if (undo.Count > 0)
            {
                // Given back before anything else is decided; a failed undo's holds expire at their TTL.
                await undo.SendAsync(RedisAdmissionScripts.FinishScoped, 0).ConfigureAwait(false);
            }

            next.AddRange(retries);
            Interlocked.Add(ref _retried, retries.Count);
            pending = next;
        }

        // Each call has its answer (PendingCall.Answer): no batch reply to build and parse again.
        return NoBatchReply;
    }

    /// <summary>
    /// One call's answer in <see cref="RedisAdmissionScripts.Reserve"/>'s layout, built from its steps, less the holds
    /// its steps saw that were undone (<paramref name="undone"/>, per scope: those of earlier calls).
    /// </summary>
    private static long[] Answer(List<StepReply> steps, long[]? refusal, bool failed, Dictionary<string, Undone> undone)
    {
        var answer = new long[ReserveReplyLength];
        answer[17] = -1;
        answer[20] = -1;
        answer[0] = failed ? -1 : refusal is null ? 1 : 0;
        answer[5] = -1;
        if (refusal is not null)
        {
            refusal.AsSpan(1, 5).CopyTo(answer.AsSpan(1));
        }

        foreach (var step in steps)
        {
            if (step.Failure is not null)
            {
                continue;
            }

            var reply = step.Reply;
            var before = undone.TryGetValue(step.Scope, out var total) ? total : default;

            var budget = step.ScopeKind switch { UserScope => 6, TeamScope => 9, RunScope => 12, _ => -1 };
            if (budget >= 0)
            {
                answer[budget] = reply[6] - before.Usd;
                answer[budget + 1] = reply[7] - before.Tokens;
                answer[budget + 2] = reply[8] - before.Calls;
            }

            if (step.ScopeKind == RunScope)
            {
                answer[21] = reply[12];
            }

            var window = step.ScopeKind switch { UserScope => 15, KeyScope => 18, _ => -1 };
            if (window >= 0)
            {
                answer[window] = reply[9] - before.Calls;
                answer[window + 1] = reply[10] - before.Tokens;
                answer[window + 2] = reply[11];
            }
        }

        return answer;
    }

    /// <summary>What the undone holds of one scope add up to.</summary>
    private readonly record struct Undone(long Usd, long Tokens, long Calls)
    {
        public Undone Add(RedisReservation held) => new(Usd + held.UsdNanos, Tokens + held.ReservedTokens, Calls + 1);
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
                // Each scope's step is marked in its own slot, so a retry redoes only the steps that did not run.
                var marker = (string)item.Held.Keys[ScopeKeys(scopes[s]).Offset]! + item.Marker;
                steps.Add(index, scopes[s], item.Held, [item.Numbers, item.Held.RequestHash, item.Held.ExpiryField, item.Held.WindowField, marker, item.Held.Id]);
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
}
