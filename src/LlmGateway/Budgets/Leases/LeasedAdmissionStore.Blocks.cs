using System.Globalization;

namespace LlmGateway.Budgets.Leases;

/// <summary>A block's life: granted, admitting locally, closed, returned.</summary>
internal sealed partial class LeasedAdmissionStore
{
    /// <summary>Admits the call on the open blocks of its scopes, or returns null when one has no room for it.</summary>
    private AdmissionResult? TryAdmit(LeaseScope user, LeaseLimits userLimits, LeaseScope? team, LeaseLimits teamLimits, LeaseAmounts need, long ei, long now)
    {
        lock (user.Gate)
        {
            if (Usable(user, userLimits, need, ei, now) is not { } userBlock)
            {
                return null;
            }

            if (team is null)
            {
                return Admit(need, ei, userBlock, userLimits, null, teamLimits);
            }

            lock (team.Gate)
            {
                return Usable(team, teamLimits, need, ei, now) is { } teamBlock ? Admit(need, ei, userBlock, userLimits, teamBlock, teamLimits) : null;
            }
        }
    }

    private AdmissionResult Admit(LeaseAmounts need, long ei, LeaseBlock user, LeaseLimits userLimits, LeaseBlock? team, LeaseLimits teamLimits)
    {
        var fractions = new BudgetFractions(Fraction(user, userLimits), team is null ? 0 : Fraction(team, teamLimits), 0);
        Take(user, need);
        if (team is not null)
        {
            Take(team, need);
        }

        var held = new LeasedReservation(this, _idPrefix, Interlocked.Increment(ref _sequence), need, ei * 1000, user, team);
        return new AdmissionResult(held, AdmissionRejection.None, AdmissionScope.None, AdmissionLimit.None, 0, null, default, default, fractions);

        static void Take(LeaseBlock block, LeaseAmounts need)
        {
            block.Held += need;
            block.Admitted++;
        }
    }

    /// <summary>
    /// How full the scope was before this call, as far as this replica knows: spent and reserved at the block's grant
    /// (every replica) plus what this block has held and spent since.
    /// </summary>
    private static double Fraction(LeaseBlock block, LeaseLimits limits)
    {
        var used = block.UsedAtGrant + block.Held + block.Used;
        var fraction = 0d;
        if (limits.Usd > 0)
        {
            fraction = Math.Max(fraction, (double)used.Usd / limits.Usd);
        }

        if (limits.Tokens > 0)
        {
            fraction = Math.Max(fraction, (double)used.Tokens / limits.Tokens);
        }

        if (limits.Calls > 0)
        {
            fraction = Math.Max(fraction, (double)used.Calls / limits.Calls);
        }

        return fraction;
    }

    /// <summary>The scope's open block if the call fits in it; a block that can no longer serve is closed. Under the gate.</summary>
    private LeaseBlock? Usable(LeaseScope scope, LeaseLimits limits, LeaseAmounts need, long ei, long now)
    {
        if (scope.Open is not { } block)
        {
            return null;
        }

        if (now >= block.OpenUntilMs || block.Version < scope.KnownVersion || block.Limits != limits || !(block.Held + block.Used + need).FitsIn(block.Granted))
        {
            CloseLocked(scope, block);
            return null;
        }

        // The call's own hold must expire no later than the block: a call may not outlive the room Redis keeps for it.
        return ei <= block.ExpirySecond ? block : null;
    }

    private void CloseLocked(LeaseScope scope, LeaseBlock block)
    {
        block.IsClosed = true;
        if (ReferenceEquals(scope.Open, block))
        {
            scope.Open = null;
        }

        scope.Closed.Add(block);
        scope.WantCalls = Math.Clamp(block.Admitted * 2, _lease.MinCalls, _lease.MaxCalls);
    }

    /// <summary>Makes sure the scope has a block (taking one if needed); false when Redis grants none (no room, halted).</summary>
    private async ValueTask<bool> EnsureBlockAsync(LeaseScope scope, LeaseLimits limits, LeaseAmounts need, long ei, CancellationToken cancellationToken)
    {
        Task<bool> grant;
        lock (scope.Gate)
        {
            if (Usable(scope, limits, need, ei, NowMs()) is not null)
            {
                return true;
            }

            grant = scope.Granting ??= GrantAsync(scope, limits, need, ei);
        }

        return await grant.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    private async Task<bool> GrantAsync(LeaseScope scope, LeaseLimits limits, LeaseAmounts need, long ei)
    {
        // Started under the scope's gate: the rest runs after the caller left it.
        await Task.Yield();
        try
        {
            await EnsureSubscribedAsync().ConfigureAwait(false);

            // The room of this replica's closed blocks goes back first, so the new block can have it.
            await FlushClosedAsync(scope).ConfigureAwait(false);
            long want;
            lock (scope.Gate)
            {
                want = scope.WantCalls == 0 ? _lease.MinCalls : scope.WantCalls;
            }

            var now = NowMs();
            var field = "x" + ei.ToString(CultureInfo.InvariantCulture);
            var numbers = Pack(
            [
                now, ei, need.Usd, need.Tokens, want, limits.Usd, limits.Tokens, limits.Calls, scope.PeriodEndMs, _retentionMs,
                _lease.Fraction, scope.IsUser ? 1 : 0,
            ]);
            var reply = (long[])(await EvaluateAsync(LeaseScripts.Grant, [scope.Control, scope.Budget, scope.Reservations], [numbers, field, _channelName]).ConfigureAwait(false))!;
            var calls = reply[0];
            lock (scope.Gate)
            {
                scope.KnownVersion = Math.Max(scope.KnownVersion, reply[1]);
                if (calls <= 0)
                {
                    return false;
                }

                var block = new LeaseBlock(
                    scope,
                    new LeaseAmounts(calls * need.Usd, calls * need.Tokens, calls),
                    ei,
                    field,
                    now + _windowMs,
                    reply[1],
                    limits,
                    new LeaseAmounts(reply[2], reply[3], reply[4]));
                if (scope.Open is { } previous)
                {
                    CloseLocked(scope, previous);
                }

                scope.Open = block;
                return true;
            }
        }
        finally
        {
            lock (scope.Gate)
            {
                scope.Granting = null;
            }
        }
    }

    /// <summary>A leased call finished: its hold leaves its blocks, its cost (settle) waits in them until they return.</summary>
    private async ValueTask FinishAsync(LeasedReservation held, LeaseAmounts actual)
    {
        if (!ReferenceEquals(held.Store, this))
        {
            throw new ArgumentException("The reservation was made by another store.", nameof(held));
        }

        if (!held.TryComplete())
        {
            return;
        }

        if (Finish(held.User, held.HeldAmounts, actual))
        {
            await FlushAsync(held.User).ConfigureAwait(false);
        }

        if (held.Team is { } team && Finish(team, held.HeldAmounts, actual))
        {
            await FlushAsync(team).ConfigureAwait(false);
        }

        // True when the block is closed and this was its last call: it goes back now.
        static bool Finish(LeaseBlock block, LeaseAmounts held, LeaseAmounts actual)
        {
            lock (block.Scope.Gate)
            {
                block.Held -= held;
                block.Used += actual;
                return block.IsClosed && block.Held.Calls == 0;
            }
        }
    }

    /// <summary>Closes the scope's open block and returns what every closed block does not hold.</summary>
    private async ValueTask CloseAsync(LeaseScope scope)
    {
        lock (scope.Gate)
        {
            if (scope.Open is { } open)
            {
                CloseLocked(scope, open);
            }
        }

        await FlushClosedAsync(scope).ConfigureAwait(false);
    }

    private async ValueTask FlushClosedAsync(LeaseScope scope)
    {
        LeaseBlock[] closed;
        lock (scope.Gate)
        {
            if (scope.Closed.Count == 0)
            {
                return;
            }

            closed = [.. scope.Closed];
        }

        foreach (var block in closed)
        {
            await FlushAsync(block).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Charges a closed block's settled calls and gives back all its room but what its calls in flight hold; when none
    /// are left the block is gone. A return Redis does not confirm is retried in the background under its id, which
    /// the script records, so it is charged once (LeasedAdmissionStore.Returns.cs).
    /// </summary>
    private async ValueTask FlushAsync(LeaseBlock block)
    {
        var scope = block.Scope;
        LeaseAmounts spend, release;
        lock (scope.Gate)
        {
            if (!block.IsClosed)
            {
                return;
            }

            spend = block.Used;
            release = block.Granted - block.Held;
            if (spend.IsZero && release.IsZero)
            {
                return;
            }

            block.Used = default;
            block.Granted = block.Held;
            if (block.Granted.Calls == 0)
            {
                scope.Closed.Remove(block);
            }
        }

        var now = NowMs();
        var numbers = Pack([now, spend.Usd, spend.Tokens, spend.Calls, release.Usd, release.Tokens, release.Calls, scope.PeriodEndMs, _retentionMs]);
        await ReturnAsync(new PendingReturn([scope.Budget, ReturnMarker(scope, now)], [numbers, block.ExpiryField, NextReturnId()])).ConfigureAwait(false);
    }
}
