using LlmGateway.Identity;

namespace LlmGateway.Tools;

/// <summary>What the audit record of one tool call says; filled in as the call proceeds, written once when it ends.</summary>
internal sealed class ToolCallAudit(long start, string requestId, string method)
{
    public long Start { get; } = start;

    public string RequestId { get; } = requestId;

    public string Method { get; } = method;

    public string Tool { get; set; } = string.Empty;

    public string Path { get; set; } = "/";

    public CallerKey? Caller { get; set; }

    public string? RunId { get; set; }

    public ToolRoute? Route { get; set; }

    /// <summary>The rule that allowed the call; null while (or because) it is denied.</summary>
    public string? Rule { get; set; }

    public string Reason { get; set; } = "completed";

    /// <summary>The gateway refused the call itself (permission, limit, idempotency conflict, bulkhead, ...).</summary>
    public bool Denied { get; set; }

    public int Attempts { get; set; }

    public string? IdempotencyKey { get; set; }

    public bool Replayed { get; set; }

    /// <summary>The call's 1-based index in its run (one counter with the run's LLM calls); null without a run or admission.</summary>
    public long? Step { get; set; }

    /// <summary>The W3C trace id of the activity the call ran in, when there was one.</summary>
    public string? TraceId { get; set; }

    /// <summary>The approval the call was held for, when its rule needs one.</summary>
    public string? ApprovalId { get; set; }
}
