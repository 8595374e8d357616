using System.Security.Cryptography;
using System.Text;
using LlmGateway.Approvals;
using LlmGateway.Budgets;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Identity;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Admin;

/// <summary>
/// The operator API under /admin, behind <c>Authorization: Bearer &lt;Gateway:AdminKey&gt;</c> (from the
/// environment). Halts go through the shared store, so they reach every replica on the next call.
/// </summary>
internal static class AdminEndpoints
{
    public static void Map(IEndpointRouteBuilder endpoints)
    {
        var admin = endpoints.MapGroup("/admin").AddEndpointFilter(RequireAdminKey);
        admin.MapGet("/runs/{id}", GetRunAsync);
        admin.MapGet("/runs/{id}/calls", RunCallEndpoints.GetCallsAsync);
        admin.MapPost("/runs/{id}/halt", (string id, IAdmissionStore store, ApprovalDecisions approvals, ILoggerFactory logs, CancellationToken ct) => ControlAsync(logs, "halt-run", id, () => HaltAsync(store.HaltRunAsync(id, ct), approvals, id, null, ct), new { run = id, halted = true }));
        admin.MapPost("/runs/{id}/resume", (string id, IAdmissionStore store, ILoggerFactory logs, CancellationToken ct) => ControlAsync(logs, "resume-run", id, () => store.ResumeRunAsync(id, ct), new { run = id, halted = false }));
        admin.MapGet("/users/{id}", GetUserAsync);
        admin.MapPost("/users/{id}/halt", (string id, IAdmissionStore store, ApprovalDecisions approvals, ILoggerFactory logs, CancellationToken ct) => ControlAsync(logs, "halt-user", id, () => HaltAsync(store.HaltUserAsync(id, ct), approvals, null, id, ct), new { user = id, halted = true }));
        admin.MapPost("/users/{id}/resume", (string id, IAdmissionStore store, ILoggerFactory logs, CancellationToken ct) => ControlAsync(logs, "resume-user", id, () => store.ResumeUserAsync(id, ct), new { user = id, halted = false }));
        RecordingEndpoints.Map(admin);
        ApprovalEndpoints.Map(endpoints);
    }

    /// <summary>A halt also denies the calls of the run or user held for approval, on every replica (run_halted / user_halted).</summary>
    private static async ValueTask HaltAsync(ValueTask halt, ApprovalDecisions approvals, string? runId, string? user, CancellationToken ct)
    {
        await halt;
        try
        {
            await approvals.DenyHeldAsync(runId, user, ct);
        }
        catch (ApprovalStoreUnavailableException)
        {
            // The halt itself holds: a held call that is approved later is still refused by its admission.
        }
    }

    private static async ValueTask<object?> RequireAdminKey(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var adminKey = http.RequestServices.GetRequiredService<GatewayConfigProvider>().Current.Options.AdminKey;
        if (string.IsNullOrEmpty(adminKey))
        {
            return new ErrorResult(GatewayError.PermissionDenied("The admin API is disabled: set Gateway__AdminKey in the gateway's environment."));
        }

        var presented = http.Request.Headers.Authorization.ToString();
        if (!presented.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase)
            || !CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(presented[7..].Trim())), SHA256.HashData(Encoding.UTF8.GetBytes(adminKey))))
        {
            return new ErrorResult(GatewayError.InvalidApiKey("The admin API needs 'Authorization: Bearer <admin key>'."));
        }

        if (http.Request.RouteValues["id"] is string id && !CallerAuthenticator.IsValidId(id))
        {
            return new ErrorResult(GatewayError.InvalidRequest("The id must be 1 to 128 characters: letters, digits and . _ : -", "id"));
        }

        return await next(context);
    }

    private static async Task<IResult> GetRunAsync(string id, IAdmissionStore store, CancellationToken ct)
    {
        try
        {
            var state = await store.GetRunStateAsync(id, ct);
            return state is null
                ? new ErrorResult(new GatewayError(StatusCodes.Status404NotFound, "run_not_found", "invalid_request_error", $"No run '{id}' is known (never seen, or expired after its idle time).", false))
                : Results.Json(new
                {
                    run = state.RunId,
                    user = state.User,
                    spent_usd = state.SpentUsd,
                    reserved_usd = state.ReservedUsd,
                    spent_tokens = state.SpentTokens,
                    reserved_tokens = state.ReservedTokens,
                    calls = state.Calls,
                    in_flight = state.InFlight,
                    started = state.StartedAt,
                    deadline = state.Deadline,
                    last_activity = state.LastActivityAt,
                    halted = state.Halted,
                    limits = new { usd = state.Limits.Usd, tokens = state.Limits.Tokens, calls = state.Limits.Calls },
                });
        }
        catch (AdmissionStoreUnavailableException)
        {
            return StoreUnavailable();
        }
    }

    private static async Task<IResult> GetUserAsync(string id, IAdmissionStore store, GatewayConfigProvider config, TimeProvider time, CancellationToken ct)
    {
        var options = config.Current.Options;
        options.Users.TryGetValue(id, out var user);
        var budget = user?.Budget ?? options.UserDefaults.Budget;
        var period = budget?.Period ?? BudgetPeriod.Day;
        try
        {
            var state = await store.GetUserStateAsync(id, BudgetPeriods.GetKey(period, time.GetUtcNow()), ct);
            return Results.Json(new
            {
                user = state.User,
                period = period.ToString(),
                period_key = state.PeriodKey,
                period_end = state.PeriodEnd ?? BudgetPeriods.GetEnd(period, time.GetUtcNow()),
                spent_usd = state.SpentUsd,
                reserved_usd = state.ReservedUsd,
                spent_tokens = state.SpentTokens,
                reserved_tokens = state.ReservedTokens,
                calls = state.Calls,
                in_flight = state.InFlight,
                halted = state.Halted,
                limits = new { usd = budget?.Usd ?? 0, tokens = budget?.Tokens ?? 0 },
            });
        }
        catch (AdmissionStoreUnavailableException)
        {
            return StoreUnavailable();
        }
    }

    private static async Task<IResult> ControlAsync(ILoggerFactory logs, string action, string target, Func<ValueTask> apply, object answer)
    {
        try
        {
            await apply();
        }
        catch (AdmissionStoreUnavailableException)
        {
            return StoreUnavailable();
        }

        Telemetry.AuditLog.AdminAction(logs.CreateLogger(Telemetry.AuditLog.Category), action, target);
        return Results.Json(answer);
    }

    internal static ErrorResult StoreUnavailable() => new(GatewayError.StoreUnavailable("The budget store did not answer in time; retry shortly."));

    /// <summary>Writes a <see cref="GatewayError"/> as an endpoint result.</summary>
    internal sealed class ErrorResult(GatewayError error) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            Forwarding.RequestIds.For(httpContext);
            return error.WriteAsync(httpContext.Response);
        }
    }
}
