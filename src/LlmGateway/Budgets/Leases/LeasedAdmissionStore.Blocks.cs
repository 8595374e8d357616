namespace LlmGateway.Budgets.Leases;

/// <summary>A block's life: granted, admitting locally, closed, returned.</summary>
internal sealed partial class LeasedAdmissionStore
{
    /// <summary>Admits the call on the open blocks of its scopes, or returns null when one has no room for it.</summary>
    private AdmissionResult? TryAdmit(LeasePart[] parts, long ei, long now)
    {
        var blocks = new LeaseBlock[parts.Length];
        var entered = 0;
        try
        {
            // Gates are taken in the parts' fixed order; every other path holds one gate at a time.
            foreach (var part in parts)
            {
                part.Scope.Gate.Enter();
                entered++;
                if (Usable(part.Scope, part.Limits, part.Need, ei, now) is not { } block)
                {
                    return null;
                }

                blocks[entered - 1] = block;
            }

            return Admit(parts, blocks, ei, now);
        }
        finally
        {
            for (var i = 0; i < entered; i++)
            {
                parts[i].Scope.Gate.Exit();
            }
        }
    }

    private AdmissionResult Admit(LeasePart[] parts, LeaseBlock[] blocks, long ei, long now)
    {
        double user = 0, team = 0;
        RateLimitSnapshot requests = default, tokens = default;
        var holds = new LeaseHold[parts.Length];
        for (var i = 0; i < parts.Length; i++)
        {
            var (scope, limits, need, rates) = parts[i];
            var block = blocks[i];
            if (scope.Kind == LeaseKind.Budget && scope.IsUser)
            {
                user = Fraction(block, limits);
            }
            else if (scope.Kind == LeaseKind.Budget)
            {
                team = Fraction(block, limits);
            }

            block.Held += need;
            block.Admitted++;
            holds[i] = new LeaseHold(block, need);
            if (scope.Kind == LeaseKind.Rate)
            {
                // The window as this replica knows it: every replica's calls and blocks at the grant, and this block's
                // calls since (this one included).
                var used = block.UsedAtGrant + block.Held + block.Used;
                RedisAdmissionStore.Window(ref requests, ref tokens, used.Calls, used.Tokens, block.Oldest >= 0 ? block.Oldest : block.ExpirySecond, rates, false, 0, now);
            }
        }

        var held = new LeasedReservation(this, _idPrefix, Interlocked.Increment(ref _sequence), parts[0].Need, ei * 1000, holds);
        return new AdmissionResult(held, AdmissionRejection.None, AdmissionScope.None, AdmissionLimit.None, 0, null, requests, tokens, new BudgetFractions(user, team, 0));
    }

    /// <summary>
    /// How full the scope was before this call, as far as this replica knows: spent and reserved at the block's grant
    /// (every replica) plus what this block has held and spent since.
    /// </summary>
    private static double Fraction(LeaseBlock block, LeaseLimits limits)
    {
        var used = block.UsedAtGrant + block.Charged + block.Held + block.Used;
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

        if (now >= block.OpenUntilMs || block.Version < scope.KnownVersion || block.Limits != limits || !Fits(block, need))
        {
            CloseLocked(scope, block);
            return null;
        }

        // The call's own hold must expire no later than the block: a call may not outlive the room Redis keeps for it.
        // (A rate block's second bounds when calls are admitted on it, not how long they hold.)
        return scope.Kind == LeaseKind.Rate || ei <= block.ExpirySecond ? block : null;
    }

    /// <summary>
    /// Whether the call fits in what Redis holds for the block: every amount of a budget block; for a rate or in-flight
    /// block only the amounts that have a limit (its window's tokens are counted even without a TPM, and corrected on
    /// return, as the per-call store counts them).
    /// </summary>
    private static bool Fits(LeaseBlock block, LeaseAmounts need)
    {
        var after = block.Held + block.Used + need;
        if (block.Scope.Kind == LeaseKind.Budget)
        {
            return after.FitsIn(block.Granted);
        }

        return (block.Limits.Tokens <= 0 || after.Tokens <= block.Granted.Tokens) && (block.Limits.Calls <= 0 || after.Calls <= block.Granted.Calls);
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
            var connection = Volatile.Read(ref _connectionEpoch);
            var (version, block) = await RequestBlockAsync(scope, limits, need, ei, want, now).ConfigureAwait(false);
            lock (scope.Gate)
            {
                scope.KnownVersion = Math.Max(scope.KnownVersion, version);
                if (block is null)
                {
                    return false;
                }

                if (scope.Open is { } previous)
                {
                    CloseLocked(scope, previous);
                }

                scope.Open = block;
                if (connection != Volatile.Read(ref _connectionEpoch))
                {
                    // Granted before a connection was lost: it admits nothing (see OnConnectionLost), its room goes back.
                    CloseLocked(scope, block);
                }

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

        foreach (var (block, need) in held.Holds)
        {
            // What the call cost in each block's terms: a rate window counts a settled call's actual tokens (a released
            // call leaves it); an in-flight slot is free again whatever the call cost.
            var cost = block.Scope.Kind switch
            {
                LeaseKind.Budget => actual,
                LeaseKind.Rate => new LeaseAmounts(0, actual.Tokens, actual.Calls),
                _ => default,
            };
            if (Finish(block, need, cost))
            {
                await FlushAsync(block).ConfigureAwait(false);
            }
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
    /// Charges an open budget block's settled calls in Redis (the sweep, every 250 ms): their cost moves from the room
    /// Redis holds for the block to spent, so spent plus held there is unchanged, and so is the block's room here. A
    /// replica that dies then loses at most a sweep interval of settled spend rather than a block's whole window.
    /// </summary>
    private async ValueTask ChargeAsync(LeaseBlock block)
    {
        var scope = block.Scope;
        LeaseAmounts spend;
        lock (scope.Gate)
        {
            // A block must keep at least one call in Redis: the expiry second's field goes when its calls reach 0, and
            // with it what it still held in USD and tokens (a later release would find no field and leave them held).
            // A block whose every call is settled cannot admit another: it closes and goes back whole.
            if (block.IsClosed || block.Used.IsZero || scope.Kind != LeaseKind.Budget || block.Granted.Calls - block.Used.Calls < 1)
            {
                return;
            }

            spend = block.Used;
            block.Used = default;
            block.Granted -= spend;
            block.Charged += spend;
        }

        var now = NowMs();
        var numbers = Pack([now, spend.Usd, spend.Tokens, spend.Calls, spend.Usd, spend.Tokens, spend.Calls, scope.PeriodEndMs, _retentionMs]);
        await ReturnAsync(new PendingReturn([scope.Budget, ReturnMarker(scope, now)], [numbers, block.ExpiryField, NextReturnId()])).ConfigureAwait(false);
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

        if (scope.Kind is LeaseKind.Rate or LeaseKind.InFlight)
        {
            // Not retried: a repeat would take calls or slots out twice. Unconfirmed, they stay counted until their
            // second passes or their TTL ends: conservative, never more than a limit.
            try
            {
                await ReturnWindowOrSlotsAsync(block, spend, release).ConfigureAwait(false);
            }
            catch (AdmissionStoreUnavailableException)
            {
                Interlocked.Increment(ref _lostReturns);
            }

            return;
        }

        var now = NowMs();
        var numbers = Pack([now, spend.Usd, spend.Tokens, spend.Calls, release.Usd, release.Tokens, release.Calls, scope.PeriodEndMs, _retentionMs]);
        await ReturnAsync(new PendingReturn([scope.Budget, ReturnMarker(scope, now)], [numbers, block.ExpiryField, NextReturnId()])).ConfigureAwait(false);
    }
}
