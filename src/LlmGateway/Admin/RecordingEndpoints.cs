using System.Buffers;
using LlmGateway.Errors;
using LlmGateway.Replay;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Admin;

/// <summary>
/// /admin/recordings: the runs recorded with X-Gateway-Record (list, with each one's steps and their bytes), one recording as JSONL (one step per line:
/// step number, user, endpoint, model, request, response, usage, cost), and deletion.
/// </summary>
internal static class RecordingEndpoints
{
    public static void Map(RouteGroupBuilder admin)
    {
        admin.MapGet("/recordings", ListAsync);
        admin.MapGet("/recordings/{id}", GetAsync);
        admin.MapDelete("/recordings/{id}", DeleteAsync);
    }

    private static async Task<IResult> ListAsync(IRecordingStore store, CancellationToken ct)
    {
        try
        {
            var recordings = await store.ListAsync(ct);
            var data = new object[recordings.Count];
            for (var i = 0; i < data.Length; i++)
            {
                var r = recordings[i];
                data[i] = new { run = r.RunId, steps = r.Steps, bytes = r.Bytes, updated = r.UpdatedAt, expires = r.ExpiresAt };
            }

            return Results.Json(new { @object = "list", data });
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return AdminEndpoints.StoreUnavailable();
        }
    }

    private static async Task<IResult> GetAsync(string id, IRecordingStore store, CancellationToken ct)
    {
        IReadOnlyList<byte[]>? steps;
        try
        {
            steps = await store.GetAsync(id, ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return AdminEndpoints.StoreUnavailable();
        }

        if (steps is null)
        {
            return NotFound(id);
        }

        var output = new ArrayBufferWriter<byte>();
        for (var i = 0; i < steps.Count; i++)
        {
            RecordedStep.WriteLine(output, i + 1, steps[i]);
        }

        return Results.Bytes(output.WrittenMemory, "application/x-ndjson");
    }

    private static async Task<IResult> DeleteAsync(string id, IRecordingStore store, ILoggerFactory logs, CancellationToken ct)
    {
        bool deleted;
        try
        {
            deleted = await store.DeleteAsync(id, ct);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            return AdminEndpoints.StoreUnavailable();
        }

        if (!deleted)
        {
            return NotFound(id);
        }

        Telemetry.AuditLog.AdminAction(logs.CreateLogger(Telemetry.AuditLog.Category), "delete-recording", id);
        return Results.Json(new { run = id, deleted = true });
    }

    private static AdminEndpoints.ErrorResult NotFound(string id) => new(new GatewayError(StatusCodes.Status404NotFound, "recording_not_found", "invalid_request_error",
        $"No recording of run '{id}' is kept (never recorded with X-Gateway-Record: true, deleted, or expired after Gateway:Cache:RecordingTtl).", false));
}
