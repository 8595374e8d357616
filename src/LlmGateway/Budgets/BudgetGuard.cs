using System.Globalization;
using System.Security.Cryptography;
using LlmGateway.Accounting;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Forwarding;
using LlmGateway.Telemetry;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Budgets;

/// <summary>
/// Admission before a call goes upstream and settlement after it: the guards that need no store (context
/// window, run input cap, per-request ceiling), then one atomic reservation of the worst case against every
/// budget and limit, then settle to the actual cost (or release when nothing was generated).
/// </summary>
internal sealed class BudgetGuard
{
    /// <summary>
    /// A call reserves its prompt's cheap bound (up to ~4× the count for English text) only while that bound is
    /// under 1/<see cref="NearLimitShare"/> of every budget and TPM limit it counts against; above, the
    /// over-reservation could refuse calls that fit, so the prompt is counted.
    /// </summary>
    private const int NearLimitShare = 64;

    private readonly IAdmissionStore _store;
    private readonly GatewayMetrics _metrics;
    private readonly ILogger<BudgetGuard> _logger;

    public BudgetGuard(IAdmissionStore store, GatewayMetrics metrics, ILogger<BudgetGuard> logger)
    {
        _store = store;
        _metrics = metrics;
        _logger = logger;
    }

    /// <summary>
    /// Returns the error to answer with, or null when the call may go upstream (its reservation is on the call).
    /// When the caller allows it, serves the model's DowngradeTo instead once a budget passes the user's
    /// DowngradeAt fraction, or when only the cheaper model's reservation still fits.
    /// </summary>
    /// <param name="free">The call is answered without an upstream call (a cache hit): it counts as a request, reserves no cost or tokens, and is never downgraded.</param>
    public async ValueTask<GatewayError?> AdmitAsync(GatewayConfig config, LlmCall call, ReadOnlyMemory<byte> body, bool allowDowngrade, CancellationToken cancellationToken, bool free = false)
    {
        var requested = call.ServedModel;
        var error = await ReserveAsync(config, call, requested, body, cancellationToken, free);
        var cheaper = allowDowngrade && !free ? DowngradeTarget(config, call, requested) : null;
        if (cheaper is null)
        {
            return error;
        }

        if (error is null)
        {
            if (call.Caller.Policy.DowngradeAt is not { } threshold || call.Admission is not { } admitted || admitted.SpentFractions.Max < threshold)
            {
                return null;
            }

            // Past the threshold: the cheaper model instead, switched without ever letting go of the admission held. The
            // cheaper one is reserved while the requested one is still held, and only then is the requested one released:
            // releasing first (as before) let a concurrent call take the budget, and a failed switch then lost the caller a
            // call it had been admitted for. When both do not fit together, the requested model is served.
            var held = call.Admission;
            call.Admission = null;
            if (await ReserveAsync(config, call, cheaper, body, cancellationToken) is null && call.Admission?.Reservation is not null)
            {
                var switched = call.Admission;
                call.Admission = held;
                await ReleaseAsync(call);
                call.Admission = switched;
                Downgraded(call, requested, cheaper);
                return null;
            }

            // Refused (or the store let the call through unaccounted): keep the requested model's admission.
            call.Admission = held;
            return null;
        }

        if (error.Value.Code == GatewayErrorCodes.BudgetExceeded && await ReserveAsync(config, call, cheaper, body, cancellationToken) is null)
        {
            Downgraded(call, requested, cheaper);
            return null;
        }

        return error;
    }

    /// <summary>
    /// Admits a call that generates nothing and is never charged (Anthropic's count_tokens): it counts against the
    /// caller's requests per minute only, not against budgets, token limits or a run.
    /// </summary>
    public async ValueTask<GatewayError?> AdmitRequestOnlyAsync(GatewayConfig config, LlmCall call, CancellationToken cancellationToken)
    {
        var policy = call.Caller.Policy;
        var request = new AdmissionRequest
        {
            User = call.Caller.User,
            UserRateLimits = new RateLimits(policy.UserRates.RequestsPerMinute, 0),
            KeyId = call.Caller.Id,
            KeyRateLimits = new RateLimits(policy.KeyRates.RequestsPerMinute, 0),
            ReservationTtl = config.Options.Store.ReservationTtl,
        };
        var (result, unavailable) = await TryReserveAsync(config, call, request, cancellationToken);
        if (result is null)
        {
            return unavailable;
        }

        call.Admission = result;
        return result.IsAdmitted ? null : AdmissionErrors.Refused(result, call.Caller.User, call.Caller.Team, call.RunId, call.Caller.Id);
    }

    /// <summary>Moves the call's reservation to another model (a fallback): released, then reserved at that model's prices.</summary>
    public async ValueTask<GatewayError?> SwitchModelAsync(GatewayConfig config, LlmCall call, ModelRoute model, ReadOnlyMemory<byte> body, CancellationToken cancellationToken)
    {
        await ReleaseAsync(call);
        return await ReserveAsync(config, call, model, body, cancellationToken);
    }

    private void Downgraded(LlmCall call, ModelRoute from, ModelRoute to)
    {
        call.ServedModel = to;
        call.Downgrade = "budget";
        _metrics.RecordDowngrade(from.Name, to.Name, "budget");
    }

    private static ModelRoute? DowngradeTarget(GatewayConfig config, LlmCall call, ModelRoute model) =>
        model.Options.DowngradeTo is { Length: > 0 } name && config.Models.TryGetValue(name, out var cheaper) && call.Caller.MayUse(name) && cheaper.IsUsable
            ? cheaper
            : null;

    private async ValueTask ReleaseAsync(LlmCall call)
    {
        if (call.Admission?.Reservation is { } reservation)
        {
            call.Admission = null;
            try
            {
                await _store.ReleaseAsync(reservation, CancellationToken.None);
            }
            catch (AdmissionStoreUnavailableException ex)
            {
                BudgetLog.SettleFailed(_logger, call.RequestId, reservation.Id, 0, ex.Message);
            }
        }
    }

    private async ValueTask<GatewayError?> ReserveAsync(GatewayConfig config, LlmCall call, ModelRoute model, ReadOnlyMemory<byte> body, CancellationToken cancellationToken, bool free = false)
    {
        var policy = call.Caller.Policy;
        var maxOutput = call.Endpoint == LlmEndpoint.Embeddings ? 0 : call.Request.MaxOutputFor(model.Options);
        var window = model.Options.ContextWindow;
        var inputCap = call.RunId is not null ? policy.Runs.MaxInputTokens : 0;

        // The cheap bound first (Accounting/PromptTokens); the tokenizer's count only where the bound would be
        // refused or is a large share of a limit. Without a tokenizer there is nothing better to count with.
        var kind = model.Tokenizer;
        var counted = !kind.HasTokenizer();
        var promptTokens = PromptTokens.Bound(call.Request.Prompt, kind);
        if (!counted && ((window > 0 && promptTokens > window) || (inputCap > 0 && promptTokens > inputCap)))
        {
            promptTokens = call.CountPromptTokens(kind, CountCap(window, inputCap));
            counted = true;
        }

        // The size guards refuse only what is too long: without a tokenizer they read the estimate, not the bound
        // (which reads ~4x English text and would refuse prompts that fit). Limits on spend read the bound.
        var size = kind == TokenizerKind.Bytes ? PromptTokens.Bound(call.Request.Prompt, TokenizerKind.Estimate) : promptTokens;
        if (window > 0 && size > window)
        {
            return AdmissionErrors.ContextTooLong(counted && kind.HasTokenizer()
                ? $"The prompt has more than {window} tokens ({TokenizerNames.Name(kind)}), the context window of '{model.Name}'."
                : $"The prompt is about {size} tokens, more than the {window}-token context window of '{model.Name}'.");
        }

        if (inputCap > 0 && size > inputCap)
        {
            return AdmissionErrors.ContextTooLong(counted && kind.HasTokenizer()
                ? $"The prompt has more than {inputCap} tokens ({TokenizerNames.Name(kind)}), the run's input cap (Gateway:Runs:MaxInputTokens)."
                : $"The prompt is about {size} tokens, more than the run's input cap of {inputCap} tokens (Gateway:Runs:MaxInputTokens).");
        }

        var worstCase = CostCalculator.WorstCase(promptTokens, maxOutput, model.Prices);
        var ceiling = config.Options.Limits.MaxRequestUsd;
        if (!counted && !free && ((ceiling > 0 && worstCase > ceiling) || NearLimit(policy, call.RunId is not null, model.Prices, promptTokens)))
        {
            promptTokens = call.CountPromptTokens(kind, CountCap(window, inputCap));
            counted = true;
            worstCase = CostCalculator.WorstCase(promptTokens, maxOutput, model.Prices);
        }

        if (ceiling > 0 && worstCase > ceiling && !free)
        {
            return AdmissionErrors.Budget($"This request could cost up to ${worstCase:0.######} (prompt ~{promptTokens} tokens + {maxOutput} output tokens on '{model.Name}'), over the per-request ceiling of ${ceiling:0.######} (Gateway:Limits:MaxRequestUsd). Lower max_tokens or shorten the prompt.", null);
        }

        var runs = policy.Runs;
        var request = new AdmissionRequest
        {
            User = call.Caller.User,
            UserBudget = policy.UserBudget,
            UserBudgetPeriod = policy.UserBudgetPeriod,
            UserRateLimits = policy.UserRates,
            UserMaxInFlight = policy.UserMaxInFlight,
            Team = call.Caller.Team,
            TeamBudget = policy.TeamBudget,
            TeamBudgetPeriod = policy.TeamBudgetPeriod,
            KeyId = call.Caller.Id,
            KeyRateLimits = policy.KeyRates,
            RunId = call.RunId,
            RunBudget = new BudgetLimits(runs.Usd, runs.Tokens, runs.Calls),
            RunDeadline = runs.Deadline ?? TimeSpan.Zero,
            RunMaxRepeats = runs.MaxRepeats,
            RunMaxInFlight = runs.MaxInFlight,
            RequestHash = call.RunId is not null && runs.MaxRepeats > 0 ? HashBody(body.Span) : null,
            ReserveUsd = free ? 0 : worstCase,
            ReserveTokens = free ? 0 : promptTokens + maxOutput,
            ReservationTtl = config.Options.Store.ReservationTtl,
        };

        var (result, unavailable) = await TryReserveAsync(config, call, request, cancellationToken);
        if (result is { IsAdmitted: false } && !counted && !free && RefusedBySize(result))
        {
            // Refused with the cheap bound: the count may fit where the bound did not.
            var exact = call.CountPromptTokens(kind, CountCap(window, inputCap));
            if (exact < promptTokens)
            {
                (result, unavailable) = await TryReserveAsync(config, call, request with
                {
                    ReserveUsd = CostCalculator.WorstCase(exact, maxOutput, model.Prices),
                    ReserveTokens = exact + maxOutput,
                }, cancellationToken);
            }
        }

        if (result is null)
        {
            return unavailable;
        }

        call.Admission = result;
        if (result.IsAdmitted)
        {
            // A call reserved again (budget downgrade, fallback) keeps its first step; the counter moved on regardless.
            if (result.Reservation.Step > 0)
            {
                call.Step ??= result.Reservation.Step;
            }

            if (policy.UserBudget.Usd > 0)
            {
                _metrics.SetBudget(call.Caller.User, (double)policy.UserBudget.Usd * result.SpentFractions.User, (double)policy.UserBudget.Usd);
            }

            return null;
        }

        return AdmissionErrors.Refused(result, call.Caller.User, call.Caller.Team, call.RunId, call.Caller.Id);
    }

    /// <summary>The store's answer, or (when the store did not answer) null and the error its policy calls for (null: let the call through).</summary>
    private async ValueTask<(AdmissionResult? Result, GatewayError? Unavailable)> TryReserveAsync(GatewayConfig config, LlmCall call, AdmissionRequest request, CancellationToken cancellationToken)
    {
        try
        {
            return (await _store.ReserveAsync(request, cancellationToken), null);
        }
        catch (AdmissionStoreUnavailableException ex)
        {
            _metrics.RecordStoreUnavailable(config.Options.Store.OnUnavailable == StoreFailurePolicy.Allow, ex);
            BudgetLog.StoreUnavailable(_logger, call.RequestId, config.Options.Store.OnUnavailable.ToString(), ex.Message);
            if (config.Options.Store.OnUnavailable == StoreFailurePolicy.Allow)
            {
                return (null, null);
            }

            return (null, GatewayError.StoreUnavailable("The gateway's budget store did not answer in time, and its policy (Gateway:Store:OnUnavailable) is to refuse calls it cannot account for. Retry shortly."));
        }
    }

    private static bool NearLimit(CallerPolicy policy, bool inRun, ModelPrices prices, long promptTokens)
    {
        var usd = CostCalculator.WorstCase(promptTokens, 0, prices) * NearLimitShare;
        var tokens = promptTokens * NearLimitShare;
        return Near(usd, policy.UserBudget.Usd) || Near(tokens, policy.UserBudget.Tokens)
            || Near(usd, policy.TeamBudget.Usd) || Near(tokens, policy.TeamBudget.Tokens)
            || Near(tokens, policy.UserRates.TokensPerMinute) || Near(tokens, policy.KeyRates.TokensPerMinute)
            || (inRun && (Near(usd, policy.Runs.Usd) || Near(tokens, policy.Runs.Tokens)));
    }

    private static bool Near(decimal scaled, decimal limit) => limit > 0 && scaled >= limit;

    private static bool Near(long scaled, long limit) => limit > 0 && scaled >= limit;

    /// <summary>Refused by a limit the prompt's size counts against (USD or token budget, TPM).</summary>
    private static bool RefusedBySize(AdmissionResult result) =>
        result.Rejection is AdmissionRejection.BudgetExceeded or AdmissionRejection.RateLimitExceeded
        && result.FailedLimit is AdmissionLimit.Usd or AdmissionLimit.Tokens or AdmissionLimit.TokensPerMinute;

    /// <summary>Counting past the smaller of the context window and the run's input cap decides nothing more: the call is refused.</summary>
    private static long CountCap(int window, long inputCap)
    {
        var cap = long.MaxValue;
        if (window > 0)
        {
            cap = window;
        }

        if (inputCap > 0 && inputCap < cap)
        {
            cap = inputCap;
        }

        return cap;
    }

    /// <summary>The loop guard's request hash: base64 of the body's SHA-256, hashed on the stack (one string, no array).</summary>
    private static string HashBody(ReadOnlySpan<byte> body)
    {
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(body, hash);
        return Convert.ToBase64String(hash);
    }

    /// <summary>Charges what the call cost, or gives everything back when nothing reached the caller.</summary>
    public async ValueTask CompleteAsync(LlmCall call)
    {
        if (call.Admission?.Reservation is not { } reservation)
        {
            return;
        }

        try
        {
            if (call.HasUsage)
            {
                await _store.SettleAsync(reservation, call.CostUsd, call.Usage.TotalTokens, CancellationToken.None);
            }
            else
            {
                await _store.ReleaseAsync(reservation, CancellationToken.None);
            }
        }
        catch (AdmissionStoreUnavailableException ex)
        {
            // The Redis store retries it (the reason says for how long); a reservation never settled expires by itself.
            BudgetLog.SettleFailed(_logger, call.RequestId, reservation.Id, call.CostUsd, ex.Message);
        }
    }
}
