using LlmGateway.Accounting;
using LlmGateway.Configuration;
using LlmGateway.Errors;
using LlmGateway.Identity;

namespace LlmGateway.Forwarding;

/// <summary>How a call ended, for the call log and for what is charged.</summary>
internal enum CallOutcome
{
    Completed,

    /// <summary>The upstream's own non-2xx answer was passed to the caller.</summary>
    UpstreamStatus,
    UpstreamFailed,
    UpstreamGarbage,
    StreamBroken,
    ClientAborted,

    /// <summary>Answered from the response cache, no upstream call.</summary>
    Cached,

    /// <summary>Answered from a recorded run (X-Gateway-Replay-Of), no upstream call.</summary>
    Replayed,
}

/// <summary>
/// The state of one LLM call as it moves through the gateway, carried in HttpContext.Features so the
/// shared transformer needs no per-request instance.
/// </summary>
internal sealed class LlmCall
{
    public LlmCall(string requestId, CallerKey caller, string? runId, LlmEndpoint endpoint, ModelRoute model, LlmRequestInfo request, ReadOnlyMemory<byte> body, LlmCallLimits limits, long startTimestamp)
    {
        Body = body;
        Limits = limits;
        RequestId = requestId;
        Caller = caller;
        RunId = runId;
        Endpoint = endpoint;
        RequestedModel = model;
        ServedModel = model;
        Request = request;
        StartTimestamp = startTimestamp;
    }

    private bool _settled;

    /// <summary>The last count of the prompt; rare, so allocated only when made.</summary>
    private PromptCount? _count;

    public string RequestId { get; }

    public LlmCallLimits Limits { get; }

    public CallerKey Caller { get; }

    public string? RunId { get; }

    public LlmEndpoint Endpoint { get; }

    public ModelRoute RequestedModel { get; }

    public ModelRoute ServedModel { get; set; }

    /// <summary>The deployment of the served model the current (or last) attempt went to; null before the first attempt.</summary>
    public Deployments.DeploymentRoute? Deployment { get; set; }

    /// <summary>The provider of the current attempt (the served model's first before any attempt).</summary>
    public ProviderRoute ServedProvider => Deployment?.Provider ?? ServedModel.Provider;

    /// <summary>Bits of the served model's deployments that failed (or throttled) for this call: the next attempt prefers others.</summary>
    public ulong FailedDeployments { get; set; }

    /// <summary>The call's place in a deployment's own Rpm/Tpm window (<see cref="TicketDeployment"/>), settled with its usage.</summary>
    public Deployments.DeploymentRateTicket DeploymentTicket { get; set; }

    public Deployments.DeploymentRoute? TicketDeployment { get; set; }

    public LlmRequestInfo Request { get; }

    /// <summary>The caller's request body (valid while the call is handled), for counting its prompt's tokens.</summary>
    public ReadOnlyMemory<byte> Body { get; }

    /// <summary>The gateway added stream_options.include_usage, so the usage chunk is the gateway's to remove.</summary>
    public bool InjectedIncludeUsage { get; set; }

    public long StartTimestamp { get; }

    public long UpstreamStartTimestamp { get; set; }

    public long UpstreamHeadersTimestamp { get; set; }

    public long FirstChunkTimestamp { get; set; }

    public long UpstreamEndTimestamp { get; set; }

    public int UpstreamStatus { get; set; }

    public CallOutcome Outcome { get; set; }

    /// <summary>Set when the transformer declined the upstream response: the handler answers this instead.</summary>
    public GatewayError? PendingError { get; set; }

    /// <summary>The upstream's retryable status (408, 429, 5xx, 529) of the last attempt, which nothing was sent for; 0 when none.</summary>
    public int RetryableStatus { get; set; }

    /// <summary>The wait the upstream asked for with its retryable status.</summary>
    public TimeSpan? UpstreamRetryAfter { get; set; }

    /// <summary>Sum of the waits before retries so far.</summary>
    public TimeSpan TotalRetryWait { get; set; }

    /// <summary>The provider asked for a longer wait than the gateway allows.</summary>
    public bool RetryWaitTooLong { get; set; }

    /// <summary>Upstream attempts made, over all models tried.</summary>
    public int Attempts { get; set; }

    /// <summary>"budget" or "fallback" when the served model differs from the requested one.</summary>
    public string? Downgrade { get; set; }

    /// <summary>Clears what one attempt left, before the next.</summary>
    public void ResetAttempt()
    {
        PendingError = null;
        RetryableStatus = 0;
        UpstreamRetryAfter = null;
        FailureDetail = null;
        Outcome = CallOutcome.Completed;
        UpstreamHeadersTimestamp = 0;
        UpstreamEndTimestamp = 0;
        StreamUsage = default;
        StreamUsageFinal = false;
        Answer.Clear();
    }

    /// <summary>Usage as the upstream reported it, or as estimated when it did not.</summary>
    public TokenUsage Usage { get; set; }

    public bool HasUsage { get; set; }

    /// <summary>An Anthropic stream's usage so far: message_start's, updated by each message_delta.</summary>
    public MessagesUsage StreamUsage;

    /// <summary>An Anthropic stream's message_delta (its final usage) was read: its output count is the whole answer's.</summary>
    public bool StreamUsageFinal { get; set; }

    public bool UsageEstimated { get; set; }

    /// <summary>What the upstream answer said about the model behind it (drift signals and the call log).</summary>
    public Drift.AnswerSignals Answer { get; } = new();

    /// <summary>Bytes of generated text already delivered to the caller (for estimates of cut streams).</summary>
    public long DeliveredTextBytes { get; set; }

    /// <summary>The delivered text itself, kept when the served model has a tokenizer (for counts of cut streams); the handler disposes it.</summary>
    public DeliveredText? DeliveredText { get; set; }

    public decimal CostUsd { get; set; }

    /// <summary>
    /// The call's 1-based index in its run (LLM and tool calls on one counter), counted by the admission store at
    /// admission, so across replicas with Redis; null without a run, or when the store did not answer (policy Allow).
    /// </summary>
    public long? Step { get; set; }

    /// <summary>The W3C trace id of the activity the call ran in (Activity.Current), when there was one.</summary>
    public string? TraceId { get; set; }

    /// <summary>The admission decision: the reservation to settle and the caller's rate-limit state for headers.</summary>
    public Budgets.AdmissionResult? Admission { get; set; }

    /// <summary>Set when the answer is to be cached or recorded: the relay feeds it what it forwards.</summary>
    public Caching.ResponseCapture? Capture { get; set; }

    /// <summary>Why the call failed, for the log; never contains secrets.</summary>
    public string? FailureDetail { get; set; }

    /// <summary>
    /// The prompt's tokens by the tokenizer of <paramref name="kind"/> (<see cref="PromptTokens.Count"/>), counted at
    /// most once per tokenizer: a count stopped at a cap is reused for any lower cap.
    /// </summary>
    public long CountPromptTokens(TokenizerKind kind, long cap = long.MaxValue)
    {
        if (_count is { } last && last.Kind == kind && (last.Tokens <= last.Cap || cap <= last.Cap))
        {
            return last.Tokens;
        }

        var tokens = PromptTokens.Count(Body.Span, Request.Prompt, kind, cap);
        _count = new PromptCount(kind, tokens, cap);
        return tokens;
    }

    /// <summary>
    /// Charges what the upstream reported, or, when it reported nothing (a stream cut before its usage), the
    /// prompt and the delivered text by the served model's tokenizer (by bytes / 4 for the estimate).
    /// </summary>
    public void SettleUsage()
    {
        if (_settled)
        {
            return;
        }

        _settled = true;
        if (Endpoint == LlmEndpoint.CountTokens)
        {
            // Counting generates nothing and is free; settled at zero, so the call still counts as a request.
            Usage = default;
            HasUsage = true;
            CostUsd = 0;
            return;
        }

        if (HasUsage && Endpoint == LlmEndpoint.Messages && Request.Stream && !StreamUsageFinal && UpstreamHeadersTimestamp != 0)
        {
            // A Messages stream cut before its message_delta: message_start gave the input, and the output so far is
            // what was delivered, counted by the served model's tokenizer (by bytes / 4 for the estimate).
            var delivered = !ServedModel.Tokenizer.HasTokenizer() || DeliveredText is not { } deliveredText
                ? PromptTokens.Estimate(DeliveredTextBytes)
                : deliveredText.CountTokens(ServedModel.Tokenizer);
            if (delivered > Usage.OutputTokens)
            {
                Usage = Usage with { OutputTokens = delivered };
                UsageEstimated = true;
            }
        }

        if (!HasUsage)
        {
            if (UpstreamHeadersTimestamp == 0 || Outcome is CallOutcome.UpstreamFailed or CallOutcome.UpstreamStatus || (Outcome == CallOutcome.UpstreamGarbage && DeliveredTextBytes == 0))
            {
                // Nothing was generated for the caller: nothing to charge.
                return;
            }

            var kind = ServedModel.Tokenizer;
            Usage = !kind.HasTokenizer() || DeliveredText is not { } text
                ? new TokenUsage(PromptTokens.Bound(Request.Prompt, TokenizerKind.Estimate), 0, PromptTokens.Estimate(DeliveredTextBytes), 0)
                : new TokenUsage(CountPromptTokens(kind), 0, text.CountTokens(kind), 0);
            HasUsage = true;
            UsageEstimated = true;
        }

        // The serving deployment's prices (they may differ between deployments); a cached answer has none: the model's.
        CostUsd = CostCalculator.Cost(Usage, Deployment?.Prices ?? ServedModel.Prices);
    }

    /// <param name="Tokens">The count; when over <paramref name="Cap"/>, it stopped there and is only "more than the cap".</param>
    private sealed record PromptCount(TokenizerKind Kind, long Tokens, long Cap);
}
