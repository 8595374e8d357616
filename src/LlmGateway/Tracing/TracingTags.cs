namespace LlmGateway.Tracing;

/// <summary>
/// Span names and attribute names: OpenTelemetry's GenAI semantic conventions (gen_ai.*), HTTP and error ones, and
/// the gateway's own (llm_gateway.*). Never a key, a prompt or a completion, except the two content attributes,
/// which only Gateway:Tracing:CaptureContent writes.
/// </summary>
internal static class TracingTags
{
    // Span names besides "{operation} {model}" and "execute_tool {tool}".
    public const string AdmissionSpan = "admission";
    public const string CacheLookupSpan = "cache lookup";
    public const string RetryWaitEvent = "retry_wait";

    // GenAI semantic conventions.
    public const string OperationName = "gen_ai.operation.name";
    public const string System = "gen_ai.system";
    public const string ProviderName = "gen_ai.provider.name";
    public const string RequestModel = "gen_ai.request.model";
    public const string ResponseModel = "gen_ai.response.model";
    public const string InputTokens = "gen_ai.usage.input_tokens";
    public const string OutputTokens = "gen_ai.usage.output_tokens";
    public const string CacheReadInputTokens = "gen_ai.usage.cache_read.input_tokens";
    public const string CacheCreationInputTokens = "gen_ai.usage.cache_creation.input_tokens";
    public const string FinishReasons = "gen_ai.response.finish_reasons";
    public const string ToolName = "gen_ai.tool.name";

    // HTTP and errors.
    public const string HttpStatus = "http.response.status_code";
    public const string ErrorType = "error.type";
    public const string ServerAddress = "server.address";

    // The gateway's own.
    public const string RunId = "llm_gateway.run_id";
    public const string User = "llm_gateway.user";
    public const string CostUsd = "llm_gateway.cost_usd";
    public const string Cache = "llm_gateway.cache";
    public const string Step = "llm_gateway.step";
    public const string RequestId = "llm_gateway.request_id";
    public const string Provider = "llm_gateway.provider";
    public const string ServedModel = "llm_gateway.served_model";
    public const string Downgrade = "llm_gateway.downgrade";
    public const string Attempts = "llm_gateway.attempts";
    public const string Attempt = "llm_gateway.attempt";
    public const string Outcome = "llm_gateway.outcome";
    public const string Stream = "llm_gateway.stream";
    public const string RetryDelayMs = "llm_gateway.retry.delay_ms";
    public const string RetryReason = "llm_gateway.retry.reason";

    // Content: written only with Gateway:Tracing:CaptureContent. The provider's own JSON, cut at MaxContentChars.
    public const string RequestContent = "llm_gateway.request.content";
    public const string ResponseContent = "llm_gateway.response.content";
    public const int MaxContentChars = 16 * 1024;

    // gen_ai.operation.name values.
    public const string Chat = "chat";
    public const string TextCompletion = "text_completion";
    public const string Embeddings = "embeddings";
    public const string CountTokens = "count_tokens";
    public const string ExecuteTool = "execute_tool";
}
