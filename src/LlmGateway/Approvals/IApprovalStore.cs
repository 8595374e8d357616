namespace LlmGateway.Approvals;

/// <summary>
/// Approvals of held tool calls. One live approval per binding (everything that makes the call what it is: caller,
/// run, tool, method, path, query, body hash): a repeat of the call joins it. Implementations:
/// <see cref="InMemoryApprovalStore"/> (one process) and <see cref="RedisApprovalStore"/> (shared by replicas).
/// </summary>
/// <remarks>
/// A pending approval lives <see cref="ApprovalRequest.PendingTtl"/>; a decision replaces its lifetime with
/// <see cref="ApprovalRequest.DecisionTtl"/>. Store failures surface as <see cref="ApprovalStoreUnavailableException"/>.
/// </remarks>
public interface IApprovalStore
{
    /// <summary>Opens a pending approval for the binding, or returns the live one bound to it (pending or decided).</summary>
    ValueTask<ApprovalOpenResult> OpenAsync(ApprovalRequest request, CancellationToken cancellationToken = default);

    /// <summary>The approval; null when unknown or expired.</summary>
    ValueTask<ApprovalRecord?> GetAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Pending approvals, oldest first, at most <paramref name="max"/>; index entries of expired ones are dropped and reported.</summary>
    ValueTask<ApprovalListing> ListPendingAsync(int max, CancellationToken cancellationToken = default);

    /// <summary>Decides a pending approval; a decided or unknown one is left as it is.</summary>
    ValueTask<ApprovalDecisionResult> DecideAsync(ApprovalDecision decision, CancellationToken cancellationToken = default);

    /// <summary>Completes when the approval may have changed (a decision on any replica), or after <paramref name="maxWait"/>; callers read it again.</summary>
    Task WaitForChangeAsync(string id, TimeSpan maxWait, CancellationToken cancellationToken = default);
}

/// <summary>The state of an approval.</summary>
public enum ApprovalState
{
    Pending,
    Approved,
    Denied,
}

/// <summary>What a held call asks approval for.</summary>
public sealed record ApprovalRequest
{
    /// <summary>SHA-256 (hex) of the binding: user, key, run, tool, method, path, query and body hash.</summary>
    public required string Binding { get; init; }

    public required string Tool { get; init; }

    public required string Method { get; init; }

    public required string Path { get; init; }

    public string Query { get; init; } = string.Empty;

    public required string User { get; init; }

    public required string KeyId { get; init; }

    public string? RunId { get; init; }

    /// <summary>The start of the body as text, bounded (Gateway:Approvals:PreviewBytes).</summary>
    public string BodyPreview { get; init; } = string.Empty;

    public long BodyBytes { get; init; }

    public string BodySha256 { get; init; } = string.Empty;

    /// <summary>Who may decide; empty: any approver.</summary>
    public IReadOnlyList<string> Approvers { get; init; } = [];

    public required DateTimeOffset Now { get; init; }

    public required TimeSpan PendingTtl { get; init; }

    public required TimeSpan DecisionTtl { get; init; }
}

/// <summary>One approval as stored.</summary>
public sealed record ApprovalRecord
{
    public required string Id { get; init; }

    public required ApprovalState State { get; init; }

    public required ApprovalRequest Request { get; init; }

    public DateTimeOffset CreatedAt => Request.Now;

    public DateTimeOffset? DecidedAt { get; init; }

    public string? DecidedBy { get; init; }

    public string? Reason { get; init; }

    /// <summary>The error a denial answers with: approval_denied, or run_halted / user_halted when a halt denied it.</summary>
    public string? DenialCode { get; init; }
}

/// <summary>The answer of <see cref="IApprovalStore.OpenAsync"/>: the live approval of the binding, and whether this call opened it.</summary>
public sealed record ApprovalOpenResult(ApprovalRecord Approval, bool Created);

/// <summary>A person's (or a halt's) decision.</summary>
public sealed record ApprovalDecision(string Id, bool Approve, string DecidedBy, string Reason, string? DenialCode, DateTimeOffset Now);

/// <summary>How <see cref="IApprovalStore.DecideAsync"/> went.</summary>
public enum ApprovalDecisionOutcome
{
    Decided,
    AlreadyDecided,
    NotFound,
}

public sealed record ApprovalDecisionResult(ApprovalDecisionOutcome Outcome, ApprovalRecord? Approval);

/// <summary>Pending approvals, and how many index entries were found expired (undecided) and dropped by this call.</summary>
public sealed record ApprovalListing(IReadOnlyList<ApprovalRecord> Pending, IReadOnlyList<string> ExpiredTools);

/// <summary>The approval store could not answer in time.</summary>
public sealed class ApprovalStoreUnavailableException : Exception
{
    public ApprovalStoreUnavailableException()
        : this("The approval store is unavailable.")
    {
    }

    public ApprovalStoreUnavailableException(string message)
        : base(message)
    {
    }

    public ApprovalStoreUnavailableException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}
