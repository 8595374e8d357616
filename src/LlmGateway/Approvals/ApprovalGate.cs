using System.Security.Cryptography;
using System.Text;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Identity;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Approvals;

/// <summary>
/// Holds a tool call whose rule needs approval: opens (or joins) the approval bound to the call, notifies the webhook
/// of a new one, and waits up to Gateway:Approvals:Wait for a decision, woken by the store and reading it again at
/// least every <see cref="ApprovalConstants.PollInterval"/>. Approved: the caller executes the call (once, through the
/// idempotency store, keyed by the approval). Denied: 403 approval_denied (or run_halted / user_halted when a halt
/// denied it). Still pending: 409 approval_pending with the approval id; a repeat of the call joins the same approval.
/// </summary>
internal sealed class ApprovalGate(IApprovalStore store, ApprovalWebhook webhook, ApprovalMetrics metrics, TimeProvider time, ILogger<ApprovalGate> logger)
{
    /// <summary>A call to hold: who, which tool and rule, and what exactly it asks.</summary>
    public readonly record struct HeldCall(string RequestId, CallerKey Caller, string? RunId, string Tool, string Method, string Path, string Query,
        IReadOnlyList<string> Approvers, TimeSpan? ApprovalTtl, ReadOnlyMemory<byte>? Body);

    public async ValueTask<(string? ApprovalId, GatewayError? Error)> HoldAsync(ApprovalsOptions options, HeldCall call, CancellationToken cancellationToken)
    {
        var request = Describe(options, call);
        ApprovalRecord approval;
        var started = time.GetTimestamp();
        try
        {
            var opened = await store.OpenAsync(request, cancellationToken).ConfigureAwait(false);
            approval = opened.Approval;
            if (opened.Created)
            {
                ApprovalLog.Opened(logger, call.RequestId, approval.Id, call.Method, call.Tool, call.Path, call.Caller.User, call.RunId);
                webhook.Notify(approval);
            }

            var waited = approval.State == ApprovalState.Pending;
            var deadline = time.GetUtcNow() + options.Wait;
            while (approval.State == ApprovalState.Pending)
            {
                var remaining = deadline - time.GetUtcNow();
                if (remaining <= TimeSpan.Zero)
                {
                    break;
                }

                await store.WaitForChangeAsync(approval.Id, remaining < ApprovalConstants.PollInterval ? remaining : ApprovalConstants.PollInterval, cancellationToken).ConfigureAwait(false);

                // Gone: it expired undecided (PendingTtl) or was replaced; the repeat of the call opens a new one.
                approval = await store.GetAsync(approval.Id, cancellationToken).ConfigureAwait(false) ?? approval;
            }

            if (waited)
            {
                metrics.RecordWait(call.Tool, time.GetElapsedTime(started).TotalSeconds);
            }
        }
        catch (ApprovalStoreUnavailableException ex)
        {
            ApprovalLog.StoreUnavailable(logger, "hold", ex.Message);
            return (null, GatewayError.StoreUnavailable($"The call {call.Method} {call.Path} to tool '{call.Tool}' needs approval, and the approval store did not answer in time. Retry shortly."));
        }

        switch (approval.State)
        {
            case ApprovalState.Approved:
                return (approval.Id, null);
            case ApprovalState.Denied:
                return (approval.Id, Denied(approval, call));
            default:
                metrics.RecordDecision(call.Tool, ApprovalConstants.PendingTimeout);
                return (approval.Id, GatewayError.ApprovalPending(
                    $"The call {call.Method} {call.Path} to tool '{call.Tool}' needs a person's approval ({approval.Id}) and is still pending after {options.Wait.TotalSeconds:0.#} s. "
                    + $"Send the same call again to keep waiting; an operator decides with POST /admin/approvals/{approval.Id}/approve or /deny.", approval.Id));
        }
    }

    /// <summary>The binding is everything that makes the call what it is; any difference (another body) needs another approval.</summary>
    private ApprovalRequest Describe(ApprovalsOptions options, HeldCall call)
    {
        var body = call.Body ?? ReadOnlyMemory<byte>.Empty;
        var bodyHash = Convert.ToHexStringLower(SHA256.HashData(body.Span));
        var binding = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\n',
            call.Caller.User, call.Caller.Id, call.RunId ?? string.Empty, call.Tool, call.Method.ToUpperInvariant(), call.Path, call.Query, bodyHash))));
        var preview = body.Length <= options.PreviewBytes
            ? Encoding.UTF8.GetString(body.Span)
            : Encoding.UTF8.GetString(body.Span[..options.PreviewBytes]) + "…";
        return new ApprovalRequest
        {
            Binding = binding,
            Tool = call.Tool,
            Method = call.Method.ToUpperInvariant(),
            Path = call.Path,
            Query = call.Query,
            User = call.Caller.User,
            KeyId = call.Caller.Id,
            RunId = call.RunId,
            BodyPreview = preview,
            BodyBytes = body.Length,
            BodySha256 = bodyHash,
            Approvers = call.Approvers,
            Now = time.GetUtcNow(),
            PendingTtl = options.PendingTtl,
            DecisionTtl = call.ApprovalTtl ?? options.ApprovalTtl,
        };
    }

    private static GatewayError Denied(ApprovalRecord approval, HeldCall call) => approval.DenialCode switch
    {
        GatewayErrorCodes.RunHalted => new GatewayError(StatusCodes.Status403Forbidden, GatewayErrorCodes.RunHalted, "permission_error",
            $"The run '{call.RunId}' was halted by an operator while its call {call.Method} {call.Path} to tool '{call.Tool}' waited for approval ({approval.Id}).", false) { ApprovalId = approval.Id },
        GatewayErrorCodes.UserHalted => new GatewayError(StatusCodes.Status403Forbidden, GatewayErrorCodes.UserHalted, "permission_error",
            $"The user '{call.Caller.User}' was halted by an operator while the call {call.Method} {call.Path} to tool '{call.Tool}' waited for approval ({approval.Id}).", false) { ApprovalId = approval.Id },
        _ => GatewayError.ApprovalDenied(
            $"The call {call.Method} {call.Path} to tool '{call.Tool}' was denied by {approval.DecidedBy} ({approval.Id}): {approval.Reason}", approval.Id),
    };
}
