using System.Globalization;

namespace LlmGateway.Budgets.Leases;

/// <summary>What each kind of block sends to Redis: its grant and its return.</summary>
internal sealed partial class LeasedAdmissionStore
{
    private long _lateGrants;

    /// <summary>Grants that timed out here but ran, whose room was then given back (or given up); for tests.</summary>
    internal long LateGrantsGivenBack => Interlocked.Read(ref _lateGrants);

    /// <summary>Asks Redis for a block of the scope; the scope's lease version, and the block (null: no room for the call, or halted).</summary>
    private async Task<(long Version, LeaseBlock? Block)> RequestBlockAsync(LeaseScope scope, LeaseLimits limits, LeaseAmounts need, long ei, long want, long now)
    {
        switch (scope.Kind)
        {
            case LeaseKind.Rate:
            {
                // A block of the window's current second, usable only within it.
                var second = AdmissionConstants.Second(now);
                var field = "w" + second.ToString(CultureInfo.InvariantCulture);
                var numbers = Pack([now, need.Tokens, want, limits.Calls, limits.Tokens, _lease.Fraction]);
                var reply = (long[])(await EvaluateAsync(LeaseScripts.GrantRate, [scope.Budget], [numbers, field, _channelName], whenLate: late =>
                    GiveBackLateAsync(() => EvaluateAsync(LeaseScripts.ReturnRate, [scope.Budget], [Pack([second, -late[0], -late[0] * need.Tokens]), field]))).ConfigureAwait(false))!;
                var calls = reply[0];
                var openUntil = Math.Min(now + _windowMs, (second + 1) * AdmissionConstants.SecondMs);
                return (reply[1], calls <= 0 ? null : new LeaseBlock(
                    scope, new LeaseAmounts(0, calls * need.Tokens, calls), second, field, openUntil, reply[1], limits, new LeaseAmounts(0, reply[3], reply[2]))
                {
                    Oldest = reply[4],
                });
            }

            case LeaseKind.InFlight:
            {
                var field = "x" + ei.ToString(CultureInfo.InvariantCulture);
                var numbers = Pack([now, ei, want, limits.Calls, _lease.Fraction]);
                var reply = (long[])(await EvaluateAsync(LeaseScripts.GrantInFlight, [scope.Budget, scope.Reservations], [numbers, field, _channelName], whenLate: late =>
                    GiveBackLateAsync(() => EvaluateAsync(LeaseScripts.ReturnInFlight, [scope.Budget], [late[0], field]))).ConfigureAwait(false))!;
                var calls = reply[0];
                return (reply[1], calls <= 0 ? null : new LeaseBlock(scope, new LeaseAmounts(0, 0, calls), ei, field, now + _windowMs, reply[1], limits, default));
            }

            default:
            {
                var field = "x" + ei.ToString(CultureInfo.InvariantCulture);
                var numbers = Pack(
                [
                    now, ei, need.Usd, need.Tokens, want, limits.Usd, limits.Tokens, limits.Calls, scope.PeriodEndMs, _retentionMs,
                    _lease.Fraction, scope.IsUser ? 1 : 0,
                ]);
                var reply = (long[])(await EvaluateAsync(LeaseScripts.Grant, [scope.Control, scope.Budget, scope.Reservations], [numbers, field, _channelName], whenLate: late =>
                {
                    var at = NowMs();
                    var release = Pack([at, 0, 0, 0, late[0] * need.Usd, late[0] * need.Tokens, late[0], scope.PeriodEndMs, _retentionMs]);
                    return GiveBackLateAsync(() => ReturnAsync(new PendingReturn([scope.Budget, ReturnMarker(scope, at)], [release, field, NextReturnId()])).AsTask());
                }).ConfigureAwait(false))!;
                var calls = reply[0];
                return (reply[1], calls <= 0 ? null : new LeaseBlock(
                    scope, new LeaseAmounts(calls * need.Usd, calls * need.Tokens, calls), ei, field, now + _windowMs, reply[1], limits, new LeaseAmounts(reply[2], reply[3], reply[4])));
            }
        }
    }

    /// <summary>
    /// A late grant's room, given back (budget room through the retried return; window calls or slots once: not
    /// confirmed, they go when their second or TTL does).
    /// </summary>
    private async Task GiveBackLateAsync(Func<Task> giveBack)
    {
        try
        {
            await giveBack().ConfigureAwait(false);
        }
        catch (AdmissionStoreUnavailableException exception)
        {
            ReturnsLost(1, "a late grant could not be given back: " + exception.Message);
        }
        finally
        {
            Interlocked.Increment(ref _lateGrants);
        }
    }

    /// <summary>
    /// Gives back what a closed rate or in-flight block's calls do not hold: a rate block's second is corrected by the
    /// difference (settled calls stay counted at their actual tokens); an in-flight block frees its unused slots.
    /// (A budget block's return is retried under an id: LeasedAdmissionStore.Returns.cs.)
    /// </summary>
    private Task ReturnWindowOrSlotsAsync(LeaseBlock block, LeaseAmounts spend, LeaseAmounts release)
    {
        var scope = block.Scope;
        return scope.Kind == LeaseKind.Rate
            ? EvaluateAsync(
                LeaseScripts.ReturnRate,
                [scope.Budget],
                [Pack([block.ExpirySecond, spend.Calls - release.Calls, spend.Tokens - release.Tokens]), block.ExpiryField])
            : EvaluateAsync(LeaseScripts.ReturnInFlight, [scope.Budget], [release.Calls, block.ExpiryField]);
    }
}
