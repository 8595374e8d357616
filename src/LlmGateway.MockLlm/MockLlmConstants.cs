namespace LlmGateway.MockLlm;

// The request headers that steer the mock, and its configuration keys.
internal static class MockLlmConstants
{
    public const string ModelsKey = "MockLlm:Models";
    public const string RequestLogCapacityKey = "MockLlm:RequestLogCapacity";

    public const string DefaultModel = "mock-small";
    public const long DefaultCreated = 1_700_000_000;
    public const string SystemFingerprint = "fp_mock";

    // Reply shaping.
    public const string Reply = "X-Mock-Reply";
    public const string Created = "X-Mock-Created";
    public const string ToolCall = "X-Mock-Tool-Call";
    public const string ToolArguments = "X-Mock-Tool-Args";

    // The system_fingerprint chat and text completions report (default SystemFingerprint): a provider updating its model.
    public const string Fingerprint = "X-Mock-Fingerprint";
    public const string UsagePrompt = "X-Mock-Usage-Prompt";
    public const string UsageCompletion = "X-Mock-Usage-Completion";
    public const string UsageCached = "X-Mock-Usage-Cached";
    public const string UsageReasoning = "X-Mock-Usage-Reasoning";

    // Anthropic's cache usage on /v1/messages: cache_read_input_tokens and cache_creation_input_tokens.
    public const string UsageCacheRead = "X-Mock-Usage-Cache-Read";
    public const string UsageCacheWrite = "X-Mock-Usage-Cache-Write";

    // Fault injection.
    public const string Status = "X-Mock-Status";
    public const string RetryAfter = "X-Mock-Retry-After";
    public const string RetryAfterMs = "X-Mock-Retry-After-Ms";
    public const string FailTimes = "X-Mock-Fail-Times";
    public const string Scenario = "X-Mock-Scenario";
    public const string LatencyMs = "X-Mock-Latency-Ms";
    public const string Hang = "X-Mock-Hang";
    public const string ChunkDelayMs = "X-Mock-Chunk-Delay-Ms";
    public const string FailAfterChunks = "X-Mock-Fail-After-Chunks";
    public const string StreamError = "X-Mock-Stream-Error";
    public const string SplitEvents = "X-Mock-Split-Events";
    public const string Garbage = "X-Mock-Garbage";
}
