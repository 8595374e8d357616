using StackExchange.Redis;

namespace LlmGateway.Budgets.Leases;

/// <summary>
/// A run block's write-backs (every sweep while open, and its close): idempotent, one at a time, one Redis did not
/// confirm sent again as it was before anything new (docs/redis-scale-out.md, "Runs: exclusive run blocks").
/// </summary>
internal sealed partial class LeasedAdmissionStore
{
    /// <summary>Stops the block admitting and writes it back, its calls in flight becoming per-call holds; true once Redis has it.</summary>
    private Task<bool> CloseRunAsync(RunBlock block)
    {
        lock (block.Gate)
        {
            block.Open = false;
            if (block.CloseTask is { } closing && (!closing.IsCompleted || closing.Result || block.Closed))
            {
                return closing;
            }

            block.ClosingSinceMs = block.ClosingSinceMs == 0 ? NowMs() : block.ClosingSinceMs;
            block.CloseTask = WriteBackAsync(block, close: true);
            return block.CloseTask;
        }
    }

    /// <summary>
    /// One write-back (after any Redis did not confirm, sent again first): the spend settled here, the per-call holds
    /// finished here and the loop guard's changes; open, it extends the claim and reserves steps ahead; closing, it
    /// writes the calls in flight as per-call holds and lets go of the run.
    /// </summary>
    private async Task<bool> WriteBackAsync(RunBlock block, bool close)
    {
        Interlocked.Increment(ref _writeBacksInFlight);
        await Task.Yield();
        await block.Writing.WaitAsync().ConfigureAwait(false);
        try
        {
            if (block.Unconfirmed is { } again && !await SendWriteBackAsync(block, again).ConfigureAwait(false))
            {
                return false;
            }

            RunWriteBack payload;
            lock (block.Gate)
            {
                if (block.Closed || (!close && !block.Open))
                {
                    return block.Closed;
                }

                payload = NextWriteBack(block, close);
                block.Unconfirmed = payload;
            }

            return await SendWriteBackAsync(block, payload).ConfigureAwait(false);
        }
        finally
        {
            block.Writing.Release();
            Interlocked.Decrement(ref _writeBacksInFlight);
        }
    }

    /// <summary>What the block writes back now (under its gate): everything since the last write-back moves to Sending.</summary>
    private RunWriteBack NextWriteBack(RunBlock block, bool close)
    {
        var now = NowMs();
        var sending = block.Pending;
        block.Sending = block.Sending.Plus(sending);
        block.Pending = default;
        var repeats = block.RepeatChanges;
        block.RepeatChanges = new(StringComparer.Ordinal);
        var folded = block.Folded;
        block.Folded = [];
        RunBlockCall[] calls = close ? [.. block.InFlight] : [];
        if (close)
        {
            block.Converted = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            foreach (var call in calls)
            {
                call.Converting = block.Converted;
            }
        }

        // The folded finishes carry their own costs (the script charges them with their holds): not twice.
        var spent = sending;
        foreach (var finish in folded)
        {
            if (finish.Settle)
            {
                spent = spent with { Su = spent.Su - finish.CostUsd, St = spent.St - finish.CostTokens, Sc = spent.Sc - 1 };
            }
        }

        var steps = close ? block.Steps : block.Steps + RunStepsAhead;
        var limits = block.Limits;
        var args = new List<RedisValue>(3 + (2 * calls.Length) + (3 * folded.Count) + (2 * repeats.Count))
        {
            Pack([now, _inner.ReplicaId, RedisAdmissionStore.RunOwnershipMs, spent.Su, spent.St, spent.Sc, steps, close ? 1 : 0,
                RunKeyLife(calls.Length == 0 ? 0 : calls.Max(c => c.TtlMs)), calls.Length, limits is null ? 0 : 1, limits?.Usd ?? 0,
                limits?.Tokens ?? 0, limits?.Calls ?? 0, block.User is null ? 0 : 1, folded.Count]),
            block.User ?? string.Empty,
            ReservationIds.Format(_idPrefix, Interlocked.Increment(ref _sequence)),
        };
        foreach (var call in calls)
        {
            args.Add("x" + call.ExpirySecond.ToString(System.Globalization.CultureInfo.InvariantCulture));
            args.Add(Pack([call.ExpirySecond, call.UsdNanos, call.ReservedTokens, 1]));
        }

        foreach (var finish in folded)
        {
            args.Add(finish.ExpiryField);
            args.Add(Pack([finish.HeldUsd, finish.HeldTokens, finish.CostUsd, finish.CostTokens, finish.Settle ? 1 : 0]));
            args.Add(finish.RequestHash);
        }

        foreach (var (hash, delta) in repeats)
        {
            if (delta != 0 && hash.Length > 0)
            {
                args.Add(hash);
                args.Add(delta);
            }
        }

        return new RunWriteBack((string)args[2]!, MarkerKey(block.RunKey, now), [.. args], sending, close, calls, steps, now);
    }

    /// <summary>Sends a write-back; confirmed, its figures become the block's view of Redis (and a close adopts its calls).</summary>
    private async Task<bool> SendWriteBackAsync(RunBlock block, RunWriteBack payload)
    {
        long[]? reply = null;
        try
        {
            reply = (long[])(await EvaluateAsync(RunBlockScripts.Sync, [block.RunKey, block.RunKey + "x", payload.MarkerKey], payload.Args).ConfigureAwait(false))!;
        }
        catch (AdmissionStoreUnavailableException)
        {
            // Sent again, as it is, by the next write-back.
        }

        var letGo = false;
        var removed = false;
        var lost = false;
        lock (block.Gate)
        {
            if (reply is null)
            {
                if (payload.Close && NowMs() - block.ClosingSinceMs > RunCloseGiveUpMs)
                {
                    // Redis away for a minute: what the block had not written back is lost (its calls never charged).
                    block.Closed = true;
                    block.Unconfirmed = null;
                    removed = true;
                    block.Converted?.TrySetResult(false);
                    lost = true;
                }

                reply = null;
            }
            else
            {
                block.Unconfirmed = null;
                block.Sending = block.Sending.Minus(payload.Sending);
                block.Redis = new RunTotals(reply[2], reply[3], reply[4], reply[5], reply[6], reply[7]);
                if (payload.Close)
                {
                    foreach (var call in payload.Calls)
                    {
                        call.Adopted = _inner.AdoptRunHold(block.RunId, call.Id, call.UsdNanos, call.ReservedTokens, call.ExpirySecond, call.AdmittedMs, call.RequestHash, call.TtlMs, call.Step);
                        block.InFlight.Remove(call);
                    }

                    block.Closed = true;
                    removed = true;
                    block.Converted?.TrySetResult(true);
                    Interlocked.Increment(ref _runCloses);
                    _metrics?.RecordRunBlock(claimed: false);
                }
                else if (reply[0] == 1)
                {
                    block.OwnedUntilMs = payload.NowMs + RedisAdmissionStore.RunOwnershipMs;
                    block.StepsReserved = payload.Steps;
                }

                // Redis has the run as someone else's, or halted: this replica stops deciding it.
                letGo = !payload.Close && (reply[0] != 1 || reply[1] == 1);
            }
        }

        if (removed)
        {
            _runs.TryRemove(new KeyValuePair<string, RunBlock>(block.RunKey, block));
        }

        if (lost)
        {
            ReturnsLost(1, $"run {block.RunId}'s block: Redis did not confirm its close within {RunCloseGiveUpMs / 1000} s");
        }

        if (letGo)
        {
            // Not awaited: the close waits for this write-back's turn.
            Observe(CloseRunAsync(block));
        }

        return reply is not null;
    }

    /// <summary>Every sweep: open blocks write back (or let go when idle here); closes Redis did not confirm are tried again.</summary>
    private void SweepRuns(long now)
    {
        foreach (var (key, until) in _claimRefusedUntil)
        {
            if (until <= now)
            {
                _claimRefusedUntil.TryRemove(new KeyValuePair<string, long>(key, until));
            }
        }

        foreach (var block in _runs.Values)
        {
            bool open, retryClose;
            lock (block.Gate)
            {
                open = block.Open;
                retryClose = !open && !block.Closed && block.CloseTask is { IsCompleted: true, Result: false };
            }

            if (open && now - block.LastAdmittedMs >= RunIdleLetGoMs)
            {
                Observe(CloseRunAsync(block));
            }
            else if (open && block.Writing.CurrentCount > 0)
            {
                Observe(WriteBackAsync(block, close: false));
            }
            else if (retryClose)
            {
                Observe(CloseRunAsync(block));
            }
        }
    }
}
