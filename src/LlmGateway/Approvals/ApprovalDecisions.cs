using System.Globalization;
using LlmGateway.Errors;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Approvals;

/// <summary>Who is deciding: an approver key of Gateway:Approvals:Approvers, or the admin key (named "admin").</summary>
internal sealed record ApproverIdentity(string Name, IReadOnlyList<string> Groups)
{
    /// <summary>True when the approval names no approvers, or names this one or one of its groups.</summary>
    public bool MayDecide(ApprovalRecord approval)
    {
        var allowed = approval.Request.Approvers;
        if (allowed.Count == 0)
        {
            return true;
        }

        foreach (var name in allowed)
        {
            if (name == Name || Groups.Contains(name))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>
/// Decisions on approvals: a person's (approve or deny, from the admin API) and a halt's (every pending approval of
/// the halted run or user is denied with run_halted / user_halted). Each is counted and goes to the audit trail with
/// who decided.
/// </summary>
internal sealed class ApprovalDecisions(IApprovalStore store, ApprovalMetrics metrics, TimeProvider time, ILoggerFactory loggers)
{
    private readonly ILogger _audit = loggers.CreateLogger(Telemetry.AuditLog.Category);

    public async ValueTask<ApprovalDecisionResult> DecideAsync(string id, bool approve, string decidedBy, string reason, string? denialCode, CancellationToken cancellationToken)
    {
        var result = await store.DecideAsync(new ApprovalDecision(id, approve, decidedBy, reason, denialCode, time.GetUtcNow()), cancellationToken).ConfigureAwait(false);
        if (result is { Outcome: ApprovalDecisionOutcome.Decided, Approval: { } approval })
        {
            var request = approval.Request;
            metrics.RecordDecision(request.Tool, approve ? ApprovalConstants.Approved : ApprovalConstants.Denied);
            Telemetry.AuditLog.ApprovalDecision(_audit, approval.Id, approve ? ApprovalConstants.Approved : denialCode ?? ApprovalConstants.Denied, decidedBy,
                request.Method, request.Tool, request.Path, request.User, request.RunId, approval.CreatedAt.ToString("O", CultureInfo.InvariantCulture), reason);
        }

        return result;
    }

    /// <summary>Denies every pending approval of a halted run (<paramref name="runId"/>) or user (<paramref name="user"/>).</summary>
    public async ValueTask DenyHeldAsync(string? runId, string? user, CancellationToken cancellationToken)
    {
        var listing = await store.ListPendingAsync(ApprovalConstants.MaxListed, cancellationToken).ConfigureAwait(false);
        foreach (var approval in listing.Pending)
        {
            if (runId is not null && approval.Request.RunId == runId)
            {
                await DecideAsync(approval.Id, false, "admin", $"the run '{runId}' was halted", GatewayErrorCodes.RunHalted, cancellationToken).ConfigureAwait(false);
            }
            else if (user is not null && approval.Request.User == user)
            {
                await DecideAsync(approval.Id, false, "admin", $"the user '{user}' was halted", GatewayErrorCodes.UserHalted, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Lists what is pending (also refreshing the pending gauges) and counts approvals found expired undecided.</summary>
    public async ValueTask<IReadOnlyList<ApprovalRecord>> ListPendingAsync(CancellationToken cancellationToken)
    {
        var listing = await store.ListPendingAsync(ApprovalConstants.MaxListed, cancellationToken).ConfigureAwait(false);
        foreach (var tool in listing.ExpiredTools)
        {
            metrics.RecordDecision(tool, ApprovalConstants.Expired);
        }

        metrics.SetPending(listing.Pending);
        return listing.Pending;
    }
}
