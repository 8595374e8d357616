using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using LlmGateway.Approvals;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace LlmGateway.Admin;

/// <summary>
/// /admin/approvals: the pending approvals of held tool calls, and the decisions on them. Open to the admin key
/// (deciding as "admin") and to the approver keys of Gateway:Approvals:Approvers, which may use nothing else; an
/// approver sees and decides only the approvals whose rule names it or one of its groups (or names nobody).
/// </summary>
internal static class ApprovalEndpoints
{
    private const int MaxReasonLength = 1000;
    private static readonly object IdentityKey = new();

    public static void Map(IEndpointRouteBuilder endpoints)
    {
        var approvals = endpoints.MapGroup("/admin/approvals").AddEndpointFilter(RequireApprover);
        approvals.MapGet("/", ListAsync);
        approvals.MapPost("/{id}/approve", (string id, HttpContext http, CancellationToken ct) => DecideAsync(http, id, approve: true, ct));
        approvals.MapPost("/{id}/deny", (string id, HttpContext http, CancellationToken ct) => DecideAsync(http, id, approve: false, ct));
    }

    private static async ValueTask<object?> RequireApprover(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var options = http.RequestServices.GetRequiredService<GatewayConfigProvider>().Current.Options;
        var presented = http.Request.Headers.Authorization.ToString();
        var identity = presented.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? Identify(options, presented[7..].Trim()) : null;
        if (identity is null)
        {
            return new AdminEndpoints.ErrorResult(GatewayError.InvalidApiKey("The approvals API needs 'Authorization: Bearer <admin key or approver key>' (Gateway:Approvals:Approvers)."));
        }

        if (http.Request.RouteValues["id"] is string id && !CallerAuthenticator.IsValidId(id))
        {
            return new AdminEndpoints.ErrorResult(GatewayError.InvalidRequest("The id must be 1 to 128 characters: letters, digits and . _ : -", "id"));
        }

        http.Items[IdentityKey] = identity;
        return await next(context);
    }

    private static ApproverIdentity? Identify(GatewayOptions options, string key)
    {
        var presented = SHA256.HashData(Encoding.UTF8.GetBytes(key));
        if (!string.IsNullOrEmpty(options.AdminKey) && CryptographicOperations.FixedTimeEquals(presented, SHA256.HashData(Encoding.UTF8.GetBytes(options.AdminKey))))
        {
            return new ApproverIdentity(ApprovalOptionsValidator.AdminApprover, []);
        }

        foreach (var (name, approver) in options.Approvals.Approvers)
        {
            var expected = Convert.FromHexString(approver.KeySha256 is { Length: > 0 } hash ? hash : KeyHashing.Sha256Hex(approver.Key!));
            if (CryptographicOperations.FixedTimeEquals(presented, expected))
            {
                return new ApproverIdentity(name, approver.Groups);
            }
        }

        return null;
    }

    private static async Task<IResult> ListAsync(HttpContext http, ApprovalDecisions decisions, TimeProvider time, CancellationToken ct)
    {
        var identity = (ApproverIdentity)http.Items[IdentityKey]!;
        IReadOnlyList<ApprovalRecord> pending;
        try
        {
            pending = await decisions.ListPendingAsync(ct);
        }
        catch (ApprovalStoreUnavailableException)
        {
            return AdminEndpoints.StoreUnavailable();
        }

        var now = time.GetUtcNow();
        var data = new List<object>(pending.Count);
        foreach (var approval in pending)
        {
            if (identity.Name != ApprovalOptionsValidator.AdminApprover && !identity.MayDecide(approval))
            {
                continue;
            }

            var request = approval.Request;
            data.Add(new
            {
                id = approval.Id,
                tool = request.Tool,
                method = request.Method,
                path = request.Path,
                query = request.Query,
                user = request.User,
                key = request.KeyId,
                run = request.RunId,
                body_preview = request.BodyPreview,
                body_bytes = request.BodyBytes,
                body_sha256 = request.BodySha256,
                approvers = request.Approvers,
                created_at = approval.CreatedAt.ToString("O", CultureInfo.InvariantCulture),
                age_seconds = Math.Round((now - approval.CreatedAt).TotalSeconds, 3),
            });
        }

        return Results.Json(new { data });
    }

    private static async Task<IResult> DecideAsync(HttpContext http, string id, bool approve, CancellationToken ct)
    {
        var identity = (ApproverIdentity)http.Items[IdentityKey]!;
        var (reason, error) = await ReadReasonAsync(http.Request, ct);
        if (error is { } bad)
        {
            return new AdminEndpoints.ErrorResult(bad);
        }

        var store = http.RequestServices.GetRequiredService<IApprovalStore>();
        var decisions = http.RequestServices.GetRequiredService<ApprovalDecisions>();
        try
        {
            var approval = await store.GetAsync(id, ct);
            if (approval is null)
            {
                return NotFound(id);
            }

            if (!identity.MayDecide(approval))
            {
                return new AdminEndpoints.ErrorResult(GatewayError.PermissionDenied(
                    $"'{identity.Name}' may not decide approval {id}: its rule names the approvers {string.Join(", ", approval.Request.Approvers)}."));
            }

            var result = await decisions.DecideAsync(id, approve, identity.Name, reason ?? (approve ? "approved" : "no reason given"), approve ? null : GatewayErrorCodes.ApprovalDenied, ct);
            return result.Outcome switch
            {
                ApprovalDecisionOutcome.Decided => Results.Json(Describe(result.Approval!)),
                ApprovalDecisionOutcome.AlreadyDecided => new AdminEndpoints.ErrorResult(new GatewayError(StatusCodes.Status409Conflict, "approval_already_decided", "invalid_request_error",
                    $"Approval {id} was already {result.Approval!.State.ToString().ToLowerInvariant()} by {result.Approval.DecidedBy}.", false)),
                _ => NotFound(id),
            };
        }
        catch (ApprovalStoreUnavailableException)
        {
            return AdminEndpoints.StoreUnavailable();
        }
    }

    private static object Describe(ApprovalRecord approval) => new
    {
        id = approval.Id,
        state = approval.State.ToString().ToLowerInvariant(),
        decided_by = approval.DecidedBy,
        reason = approval.Reason,
        decided_at = approval.DecidedAt?.ToString("O", CultureInfo.InvariantCulture),
    };

    private static AdminEndpoints.ErrorResult NotFound(string id) => new(new GatewayError(StatusCodes.Status404NotFound, "approval_not_found", "invalid_request_error",
        $"No approval '{id}' is pending or decided (unknown, or expired).", false));

    /// <summary>The optional <c>{"reason": "…"}</c> body.</summary>
    private static async Task<(string? Reason, GatewayError? Error)> ReadReasonAsync(HttpRequest request, CancellationToken ct)
    {
        if (request.ContentLength is 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count == 0))
        {
            return (null, null);
        }

        try
        {
            using var document = await JsonDocument.ParseAsync(request.Body, cancellationToken: ct);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                return (null, GatewayError.InvalidRequest("The body must be a JSON object: {\"reason\": \"…\"}."));
            }

            if (!document.RootElement.TryGetProperty("reason", out var reason) || reason.ValueKind == JsonValueKind.Null)
            {
                return (null, null);
            }

            if (reason.ValueKind != JsonValueKind.String || reason.GetString()!.Length > MaxReasonLength)
            {
                return (null, GatewayError.InvalidRequest($"reason must be a string of at most {MaxReasonLength} characters.", "reason"));
            }

            return (reason.GetString(), null);
        }
        catch (JsonException)
        {
            return (null, GatewayError.InvalidRequest("The body must be a JSON object: {\"reason\": \"…\"}."));
        }
    }
}
