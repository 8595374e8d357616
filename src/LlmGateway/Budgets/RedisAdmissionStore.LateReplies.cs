using LlmGateway.Redis;
using StackExchange.Redis;

namespace LlmGateway.Budgets;

/// <summary>Admissions whose caller gave up before Redis answered.</summary>
internal sealed partial class RedisAdmissionStore
{
    private long _releasedLate;

    /// <summary>Admissions granted after their caller had given up, and given back at once; for tests.</summary>
    internal long ReleasedLate => Interlocked.Read(ref _releasedLate);

    /// <summary>
    /// A caller that gave up (the store timeout while Redis was slow, a client gone) may still be admitted by the batch
    /// its call was already sent in. Nobody will settle that hold: it is released when the reply comes, rather than
    /// holding the call's worst case and its in-flight slots until the reservation TTL (10 min by default), which would
    /// refuse calls that fit. A call never sent gets no reply, and nothing happens.
    /// </summary>
    private void ReleaseIfAdmittedLate(PendingCall item) =>
        RedisConnection.WhenAnswered(item.Done.Task, async batch =>
        {
            if (item.Failure is null && Admitted(batch, item))
            {
                await ReleaseLateAsync(item.Held).ConfigureAwait(false);
            }
        });

    /// <summary>
    /// A batch of admissions (a single Redis, every scope in one script) that timed out may still run when Redis
    /// catches up; every caller was told the store is unavailable, so whatever it admits is released.
    /// </summary>
    private void ReleaseWhenAnswered(Task<RedisResult> call, List<PendingCall> batch) =>
        RedisConnection.WhenAnswered(call, async reply =>
        {
            if ((long[]?)reply is not { } numbers || numbers.Length != batch.Count * ReserveReplyLength)
            {
                return;
            }

            for (var i = 0; i < batch.Count; i++)
            {
                if (numbers[i * ReserveReplyLength] == 1)
                {
                    await ReleaseLateAsync(batch[i].Held).ConfigureAwait(false);
                }
            }
        });

    /// <summary>
    /// Scope steps of a slot whose script timed out (a cluster, or run-only steps) may still run: the admission steps
    /// that then hold are undone, as the steps of a refused call are (their calls were told the store is unavailable).
    /// </summary>
    private void UndoWhenAnswered(Task<RedisResult> call, IReadOnlyList<SlotStep> steps, int replyLength) =>
        RedisConnection.WhenAnswered(call, async reply =>
        {
            if (replyLength == 0 || (long[]?)reply is not { } numbers || numbers.Length != steps.Count * replyLength)
            {
                return;
            }

            var undo = new SlotSteps(this);
            for (var s = 0; s < steps.Count; s++)
            {
                var step = steps[s];
                if (step.Reserve && numbers[s * replyLength] == 0)
                {
                    var held = step.Held;
                    undo.Add(step.Call, step.Scope, held, [FinishNumbers(held, UndoMode, 0, 0), held.RequestHash, held.ExpiryField, held.WindowField, string.Empty, string.Empty]);
                    Interlocked.Increment(ref _releasedLate);
                }
            }

            if (undo.Count > 0)
            {
                // A failed undo's holds expire at their TTL.
                await undo.SendAsync(RedisAdmissionScripts.FinishScoped, 0).ConfigureAwait(false);
            }
        });

    private async Task ReleaseLateAsync(RedisReservation held)
    {
        try
        {
            await ReleaseAsync(held).ConfigureAwait(false);
            Interlocked.Increment(ref _releasedLate);
        }
        catch (AdmissionStoreUnavailableException)
        {
            // Retried in the background like any release (RedisAdmissionStore.Retries.cs), or it expires.
        }
    }

    private static bool Admitted(RedisResult batch, PendingCall item)
    {
        if (item.Answer is { } answer)
        {
            return answer[0] == 1;
        }

        var numbers = (long[]?)batch;
        var at = item.Index * ReserveReplyLength;
        return numbers is not null && numbers.Length >= at + ReserveReplyLength && numbers[at] == 1;
    }
}
