using System.Collections.Concurrent;
using LlmGateway.Configuration;

namespace LlmGateway.Budgets.Leases;

/// <summary>The scopes a call is decided on: its budgets, rate windows and in-flight cap.</summary>
internal sealed partial class LeasedAdmissionStore
{
    /// <summary>
    /// The call's scopes, always in this order (the order their gates are taken in): the user's budget, the team's, the
    /// user's rate window, the user's in-flight cap, the key's rate window.
    /// </summary>
    private LeasePart[] Parts(AdmissionRequest request, long now)
    {
        var usd = UsdAmount.ToNanosCeiling(request.ReserveUsd);
        var tokens = Math.Max(0, request.ReserveTokens);
        var budgetNeed = new LeaseAmounts(usd, tokens, 1);
        var parts = new List<LeasePart>(5)
        {
            new(Scope(_users, "u", request.User, request.UserBudgetPeriod, now, isUser: true), Limits(request.UserBudget), budgetNeed, default),
        };
        if (request.Team is { } team)
        {
            parts.Add(new(Scope(_teams, "t", team, request.TeamBudgetPeriod, now, isUser: false), Limits(request.TeamBudget), budgetNeed, default));
        }

        if (!request.UserRateLimits.IsUnlimited)
        {
            parts.Add(RatePart(Subject(_users, request.User), "u", request.User, request.UserRateLimits, tokens));
        }

        if (request.UserMaxInFlight > 0)
        {
            var subject = Subject(_users, request.User);
            var scope = subject.InFlight ??= SubjectScope("u", request.User, LeaseKind.InFlight);
            parts.Add(new(scope, new LeaseLimits(0, 0, request.UserMaxInFlight), new LeaseAmounts(0, 0, 1), default));
        }

        if (request.KeyId is { } key && !request.KeyRateLimits.IsUnlimited)
        {
            parts.Add(RatePart(Subject(_keys, key), "k", key, request.KeyRateLimits, tokens));
        }

        return [.. parts];
    }

    private LeasePart RatePart(SubjectLeases subject, string tag, string name, RateLimits rates, long tokens)
    {
        var scope = subject.Rate ??= SubjectScope(tag, name, LeaseKind.Rate);
        var limits = new LeaseLimits(0, Math.Max(0, rates.TokensPerMinute), Math.Max(0, rates.RequestsPerMinute));
        return new(scope, limits, new LeaseAmounts(0, tokens, 1), rates);
    }

    /// <summary>
    /// A user's or key's rate or in-flight scope: its blocks live in the subject's own hash (the per-call store's
    /// <c>{u:name}</c> or <c>{k:name}</c>), which is also where halts bump the lease version.
    /// </summary>
    private LeaseScope SubjectScope(string tag, string name, LeaseKind kind)
    {
        var control = _prefix + "{" + tag + ":" + name + "}";
        return _scopes.GetOrAdd(kind + ":" + control, _ => new LeaseScope(control, control, control + "x", tag == "u", BudgetPeriod.Day, 0, 0, kind));
    }

    private static SubjectLeases Subject(ConcurrentDictionary<string, SubjectLeases> cache, string name) =>
        cache.TryGetValue(name, out var found) ? found : cache.GetOrAdd(name, static _ => new SubjectLeases());

    /// <summary>Before a call goes per call: this replica's rate and in-flight blocks of its user and key go back.</summary>
    private async ValueTask CloseSubjectsAsync(AdmissionRequest request)
    {
        if (_users.TryGetValue(request.User, out var user))
        {
            await CloseIfAnyAsync(user.Rate).ConfigureAwait(false);
            await CloseIfAnyAsync(user.InFlight).ConfigureAwait(false);
        }

        if (request.KeyId is { } key && _keys.TryGetValue(key, out var keyLeases))
        {
            await CloseIfAnyAsync(keyLeases.Rate).ConfigureAwait(false);
        }
    }

    private ValueTask CloseIfAnyAsync(LeaseScope? scope) => scope is null ? ValueTask.CompletedTask : CloseAsync(scope);

    /// <summary>One scope of a call: its limits there, what the call takes of a block, and (rate windows) its RPM/TPM.</summary>
    private readonly record struct LeasePart(LeaseScope Scope, LeaseLimits Limits, LeaseAmounts Need, RateLimits Rates);
}
