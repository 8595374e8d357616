using System.Text.Json;
using LlmGateway.Errors;
using LlmGateway.Runs;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Admin;

/// <summary><c>GET /admin/runs/{id}/calls</c>: a run's latest calls (LLM and tool), in step order, from the run ledger.</summary>
internal static class RunCallEndpoints
{
    public static async Task<IResult> GetCallsAsync(string id, IRunLedger ledger, CancellationToken ct)
    {
        IReadOnlyList<RunCallEntry>? calls;
        try
        {
            calls = await ledger.GetCallsAsync(id, ct);
        }
        catch (RunLedgerUnavailableException ex)
        {
            return new AdminEndpoints.ErrorResult(GatewayError.StoreUnavailable($"The run store (Redis) did not answer: {ex.Message}"));
        }

        return calls is null
            ? new AdminEndpoints.ErrorResult(new GatewayError(StatusCodes.Status404NotFound, "run_not_found", "invalid_request_error",
                $"No call of run '{id}' is kept (never seen, or idle past Gateway:Runs:IdleExpiry).", false))
            : Results.Json(new RunCalls(id, calls.Count, RunConstants.CallsPerRun, calls), RunCallEntry.Json);
    }

    /// <param name="Kept">At most this many of a run's latest calls are kept.</param>
    private sealed record RunCalls(string RunId, int Count, int Kept, IReadOnlyList<RunCallEntry> Calls);
}
