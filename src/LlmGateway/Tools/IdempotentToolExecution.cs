using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Tools;

/// <summary>
/// Executes an admitted tool call at most once per idempotency key: the first call claims the key, is forwarded, and
/// its response is stored; a repeat waits (bounded) while the first is in flight and then gets the stored response
/// replayed. Calls without a key are forwarded as they are.
/// </summary>
internal sealed class IdempotentToolExecution(IIdempotencyStore idempotency, ToolForwarder forwarder, GatewayMetrics metrics, ILogger<IdempotentToolExecution> logger)
{
    private static readonly TimeSpan InFlightPollInterval = TimeSpan.FromMilliseconds(50);

    public async Task ExecuteAsync(HttpContext context, ToolCall call, ReadOnlyMemory<byte>? body, GatewayConfig config, ToolCallAudit audit)
    {
        var route = call.Route;
        var options = config.Options.Idempotency;
        string? storeKey = null;
        IdempotencyClaim? claim = null;
        if (call.IdempotencyKey is { } key)
        {
            storeKey = ScopeKey(call.Caller.User, route.Name, call.IdempotencyScope ?? key);
            var hash = RequestHash(call.Method, call.Path, context.Request.QueryString.Value, body);
            var attempts = route.Options.MaxAttempts;
            var claimTtl = route.Options.Timeout * attempts + route.Options.MaxRetryWait * (attempts - 1) + TimeSpan.FromSeconds(30);
            try
            {
                claim = await ClaimAsync(storeKey, hash, claimTtl, options.WaitTimeout, context.RequestAborted).ConfigureAwait(false);
            }
            catch (IdempotencyStoreFullException ex)
            {
                // Never run without idempotency for lack of room: a repeat of this call could then run twice.
                ToolLog.IdempotencyStoreFull(logger, call.RequestId, ex.Message);
                await ToolCallResponses.RejectAsync(context, audit, ToolCallResponses.StoreFull(), metrics).ConfigureAwait(false);
                return;
            }
            catch (IdempotencyStoreUnavailableException ex)
            {
                var policy = config.Options.Store.OnUnavailable;
                ToolLog.IdempotencyStoreUnavailable(logger, call.RequestId, policy.ToString(), ex.Message);
                metrics.RecordStoreUnavailable(policy == StoreFailurePolicy.Allow, ex);
                // An approved call never runs without the store that makes it one execution, whatever the policy.
                if (policy == StoreFailurePolicy.Deny || call.IdempotencyScope is not null)
                {
                    await ToolCallResponses.RejectAsync(context, audit, ToolCallResponses.StoreUnavailable(), metrics).ConfigureAwait(false);
                    return;
                }
            }

            switch (claim?.State)
            {
                case IdempotencyState.Completed:
                    audit.Replayed = true;
                    audit.Reason = "replayed";
                    metrics.RecordIdempotentReplay(route.Name);
                    await ToolCallResponses.WriteStoredAsync(context, call.RequestId, claim.Response!, ToolConstants.ReplayedHeader, "true").ConfigureAwait(false);
                    return;
                case IdempotencyState.KeyReused:
                    await ToolCallResponses.RejectAsync(context, audit, new GatewayError(StatusCodes.Status422UnprocessableEntity, GatewayErrorCodes.IdempotencyKeyReused, "invalid_request_error",
                        $"The Idempotency-Key '{key}' was already used for a different request to tool '{route.Name}'. Use a new key for a new request.", false, ToolConstants.IdempotencyKeyHeader), metrics).ConfigureAwait(false);
                    return;
                case IdempotencyState.InFlight:
                    await ToolCallResponses.RejectAsync(context, audit, new GatewayError(StatusCodes.Status409Conflict, GatewayErrorCodes.IdempotencyInProgress, "invalid_request_error",
                        $"A call with the Idempotency-Key '{key}' to tool '{route.Name}' is still in flight after waiting {options.WaitTimeout.TotalSeconds:0.#} s. Retry later to get its result.", true), metrics).ConfigureAwait(false);
                    return;
            }

            call.BufferResponse = claim is not null;
            call.MaxStoredBytes = options.MaxStoredResponseBytes;
        }

        try
        {
            await forwarder.SendAsync(context, call, body, audit).ConfigureAwait(false);
        }
        finally
        {
            if (claim is { State: IdempotencyState.Claimed })
            {
                await FinishClaimAsync(storeKey!, claim, call, options.Ttl).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Keys are scoped per gateway user and tool, and hashed: any caller-chosen text is safe as a store key.</summary>
    public static string ScopeKey(string user, string tool, string key) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(user + "\n" + tool + "\n" + key)));

    public static string RequestHash(string method, string path, string? query, ReadOnlyMemory<byte>? body)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes(method.ToUpperInvariant() + "\n" + path + "\n" + query + "\n"));
        if (body is { } bytes)
        {
            hash.AppendData(bytes.Span);
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>Claims the key, or waits (bounded) while another call with it is in flight; a claim that is abandoned meanwhile becomes ours.</summary>
    private async Task<IdempotencyClaim> ClaimAsync(string key, string hash, TimeSpan claimTtl, TimeSpan wait, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var claim = await idempotency.TryBeginAsync(key, hash, claimTtl, cancellationToken).ConfigureAwait(false);
            if (claim.State != IdempotencyState.InFlight || Stopwatch.GetTimestamp() >= deadline)
            {
                return claim;
            }

            await Task.Delay(InFlightPollInterval, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Stores what the tool answered (any status: a repeat must see the same outcome), or gives the key up when the
    /// tool never answered, so a repeat can execute it (and the tool, given the same Idempotency-Key, can deduplicate).
    /// </summary>
    private async Task FinishClaimAsync(string key, IdempotencyClaim claim, ToolCall call, TimeSpan ttl)
    {
        try
        {
            if (call.Stored is { } stored)
            {
                await idempotency.CompleteAsync(key, claim, stored, ttl, CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                await idempotency.AbandonAsync(key, claim, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (IdempotencyStoreUnavailableException ex)
        {
            // The claim expires by itself; until then repeats wait and get 409.
            ToolLog.IdempotencyStoreUnavailable(logger, call.RequestId, "complete", ex.Message);
        }
    }
}
