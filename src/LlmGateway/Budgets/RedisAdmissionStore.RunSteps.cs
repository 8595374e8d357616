using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>
/// The run-only calls (<see cref="RedisAdmissionStore.ReserveRunAsync"/>): their admissions and their settlements,
/// releases and undos share one group commit and one script (<see cref="RedisAdmissionScripts.RunSteps"/>), so under load
/// a script carries both and a call costs about one script rather than two; on a cluster, one script per hash slot.
/// </summary>
internal sealed partial class RedisAdmissionStore
{
    /// <summary>A step's first argument: an admission (the run scope's number, as in ReserveScoped) or a finish.</summary>
    private const int ReserveStep = RunScope, FinishStep = 5;

    private long _runStepScripts;
    private long _runSteps;

    /// <summary>Run-only scripts sent, and the steps they carried (tests of the shared group commit).</summary>
    internal (long Scripts, long Steps) RunStepCounts => (Interlocked.Read(ref _runStepScripts), Interlocked.Read(ref _runSteps));

    private async Task<RedisResult> SendRunStepsAsync(List<PendingCall> batch)
    {
        Interlocked.Increment(ref _runStepScripts);
        Interlocked.Add(ref _runSteps, batch.Count);
        // Connected, and on a cluster the slot function known, before the steps are grouped.
        await IsClusterAsync().ConfigureAwait(false);
        var steps = new SlotSteps(this);
        for (var i = 0; i < batch.Count; i++)
        {
            var item = batch[i];
            var held = item.Held;
            RedisValue[] args = item.IsFinish
                ? [item.Numbers, held.RequestHash, held.ExpiryField, held.WindowField, (string)held.Keys[ScopeKeys(RunScope).Offset]! + item.Marker, held.Id]
                : [item.Numbers, held.RequestHash, item.User, held.ExpiryField, held.WindowField, ReplicaId];
            steps.Add(i, RunScope, held, args, item.IsFinish ? FinishStep : ReserveStep, reserve: !item.IsFinish);
        }

        var outcome = await steps.SendAsync(RedisAdmissionScripts.RunSteps, RedisAdmissionScripts.ScopedReplyLength).ConfigureAwait(false);
        var none = new Dictionary<string, Undone>(StringComparer.Ordinal);
        for (var i = 0; i < batch.Count; i++)
        {
            var item = batch[i];
            var mine = outcome.Of(i);
            var failure = mine.Count == 1 ? mine[0].Failure : new RedisException("The run step got no reply.");
            item.Failure = failure;
            var refusal = failure is null && !item.IsFinish && mine[0].Reply[0] > 0 ? mine[0].Reply : null;
            if (!item.IsFinish)
            {
                item.Answer = Answer(mine, refusal, failure is not null, none);
                item.InARow = failure is null && refusal is null ? mine[0].Reply[9] : 0;
            }
        }

        return NoBatchReply;
    }
}
