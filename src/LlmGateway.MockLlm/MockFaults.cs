using System.Globalization;
using System.Text;
using Microsoft.Extensions.Primitives;

namespace LlmGateway.MockLlm;

// The X-Mock-* fault headers of one request. X-Mock-Fail-Times gates the failures (status, garbage, hang,
// fail-after-chunks) to the first n requests of an X-Mock-Scenario; the shaping (latency, chunk delay, split
// events) applies to every request.
internal sealed class MockFaults
{
    private const string HtmlBadGateway = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    private const string TruncatedJson = """{"id":"chatcmpl-garbage","object":"chat.completion","created":1700000000,"choices":[{"index":0,"message":{"role":"assistant","content":"trunc""";
    private const string GarbageEvents = "data: {not json\n\ndata: {\"id\":\"chatcmpl-garbage\",\"choices\":[{\"delta\n\ndata: [DONE]\n\n";

    public int? Status { get; private init; }

    public string? RetryAfter { get; private init; }

    public string? RetryAfterMs { get; private init; }

    public int LatencyMs { get; private init; }

    public bool Hang { get; private init; }

    public int ChunkDelayMs { get; private init; }

    public int? FailAfterChunks { get; private init; }

    public bool SplitEvents { get; private init; }

    /// <summary>With FailAfterChunks: end with an in-stream error event instead of cutting the connection.</summary>
    public bool StreamError { get; private init; }

    public string? Garbage { get; private init; }

    public static MockFaults Parse(IHeaderDictionary headers, MockRequestLog log)
    {
        var failing = true;
        if (ParseInt(headers, MockLlmConstants.FailTimes) is int failTimes)
        {
            failing = log.NextScenarioAttempt(headers[MockLlmConstants.Scenario].ToString()) <= failTimes;
        }

        return new MockFaults
        {
            Status = failing ? ParseInt(headers, MockLlmConstants.Status) : null,
            RetryAfter = NullIfEmpty(headers[MockLlmConstants.RetryAfter]),
            RetryAfterMs = NullIfEmpty(headers[MockLlmConstants.RetryAfterMs]),
            LatencyMs = Math.Max(ParseInt(headers, MockLlmConstants.LatencyMs) ?? 0, 0),
            Hang = failing && ParseBool(headers, MockLlmConstants.Hang),
            ChunkDelayMs = Math.Max(ParseInt(headers, MockLlmConstants.ChunkDelayMs) ?? 0, 0),
            FailAfterChunks = failing ? ParseInt(headers, MockLlmConstants.FailAfterChunks) : null,
            SplitEvents = ParseBool(headers, MockLlmConstants.SplitEvents),
            StreamError = ParseBool(headers, MockLlmConstants.StreamError),
            Garbage = failing ? NullIfEmpty(headers[MockLlmConstants.Garbage])?.ToLowerInvariant() : null,
        };
    }

    // Waits out latency or a hang, then writes an injected failure. Returns true when the response is complete.
    public async Task<bool> TryRespondAsync(HttpContext context)
    {
        if (LatencyMs > 0)
        {
            await Task.Delay(LatencyMs, context.RequestAborted);
        }

        if (Hang)
        {
            await Task.Delay(Timeout.Infinite, context.RequestAborted);
        }

        switch (Garbage)
        {
            case "json":
                await SendTextAsync(context, StatusCodes.Status200OK, MockJson.ApplicationJson, TruncatedJson);
                return true;
            case "sse":
                await SendTextAsync(context, StatusCodes.Status200OK, "text/event-stream", GarbageEvents);
                return true;
            case "html":
                AddRetryAfter(context.Response);
                await SendTextAsync(context, Status ?? StatusCodes.Status502BadGateway, "text/html", HtmlBadGateway);
                return true;
        }

        if (Status is int status && status >= 400)
        {
            AddRetryAfter(context.Response);
            await WriteErrorAsync(context, status, string.Create(CultureInfo.InvariantCulture, $"mock injected {status}"));
            return true;
        }

        return false;
    }

    public static async Task WriteErrorAsync(HttpContext context, int statusCode, string message)
    {
        if (IsMessages(context))
        {
            await WriteAnthropicErrorAsync(context, statusCode, message);
            return;
        }

        var code = statusCode switch
        {
            StatusCodes.Status401Unauthorized => "invalid_api_key",
            StatusCodes.Status403Forbidden => "permission_denied",
            StatusCodes.Status404NotFound => "not_found",
            StatusCodes.Status429TooManyRequests => "rate_limit_exceeded",
            >= 500 => "server_error",
            _ => "invalid_request_error",
        };

        using var buffer = new PooledBufferWriter(256);
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteStartObject("error");
            writer.WriteString("message", message);
            writer.WriteString("type", code);
            writer.WriteNull("param");
            writer.WriteString("code", code);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        await MockJson.SendAsync(context, statusCode, buffer);
    }

    // Anthropic's routes answer in its shape: {"type":"error","error":{"type":...,"message":...}}; 529 is overloaded_error.
    public static bool IsMessages(HttpContext context) => context.Request.Path.Value?.Contains("/v1/messages", StringComparison.Ordinal) == true;

    private static async Task WriteAnthropicErrorAsync(HttpContext context, int statusCode, string message)
    {
        var type = statusCode switch
        {
            StatusCodes.Status401Unauthorized => "authentication_error",
            StatusCodes.Status403Forbidden => "permission_error",
            StatusCodes.Status404NotFound => "not_found_error",
            StatusCodes.Status413PayloadTooLarge => "request_too_large",
            StatusCodes.Status429TooManyRequests => "rate_limit_error",
            529 => "overloaded_error",
            >= 500 => "api_error",
            _ => "invalid_request_error",
        };

        using var buffer = new PooledBufferWriter(256);
        using (var writer = MockJson.CreateWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type", "error");
            writer.WriteStartObject("error");
            writer.WriteString("type", type);
            writer.WriteString("message", message);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        await MockJson.SendAsync(context, statusCode, buffer);
    }

    private void AddRetryAfter(HttpResponse response)
    {
        if (RetryAfter is not null)
        {
            response.Headers.RetryAfter = RetryAfter;
        }

        if (RetryAfterMs is not null)
        {
            response.Headers["retry-after-ms"] = RetryAfterMs;
        }
    }

    private static async Task SendTextAsync(HttpContext context, int statusCode, string contentType, string text)
    {
        var response = context.Response;
        response.StatusCode = statusCode;
        response.ContentType = contentType;
        response.ContentLength = Encoding.UTF8.GetByteCount(text);
        await response.WriteAsync(text, context.RequestAborted);
    }

    private static int? ParseInt(IHeaderDictionary headers, string name)
        => int.TryParse(headers[name].ToString(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) ? value : null;

    private static bool ParseBool(IHeaderDictionary headers, string name)
    {
        var value = headers[name].ToString();
        return value == "1" || value.Equals("true", StringComparison.OrdinalIgnoreCase);
    }

    private static string? NullIfEmpty(StringValues values) => StringValues.IsNullOrEmpty(values) ? null : values.ToString();
}
