using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace LlmGateway.Errors;

/// <summary>
/// An error the gateway itself answers: in OpenAI's shape, or on Anthropic's routes (/v1/messages) in Anthropic's
/// (<see cref="AnthropicError"/>), one refusal in two dialects. <see cref="ShouldRetry"/> becomes the
/// <c>x-should-retry</c> header that both vendors' SDKs obey, so an error a retry cannot fix is not retried.
/// </summary>
internal readonly record struct GatewayError(int Status, string Code, string Type, string Message, bool ShouldRetry, string? Param = null, TimeSpan? RetryAfter = null)
{
    public const string ApprovalIdHeader = "X-Gateway-Approval-Id";

    /// <summary>The upstream cannot take the call now (its circuit is open, its queue full): Anthropic's 529 overloaded_error.</summary>
    public bool Overloaded { get; init; }

    public static GatewayError InvalidApiKey(string message) =>
        new(StatusCodes.Status401Unauthorized, GatewayErrorCodes.InvalidApiKey, "invalid_request_error", message, false);

    public static GatewayError PermissionDenied(string message) =>
        new(StatusCodes.Status403Forbidden, GatewayErrorCodes.PermissionDenied, "permission_error", message, false);

    public static GatewayError InvalidRequest(string message, string? param = null) =>
        new(StatusCodes.Status400BadRequest, GatewayErrorCodes.InvalidRequest, "invalid_request_error", message, false, param);

    public static GatewayError RequestTooLarge(long limit) =>
        new(StatusCodes.Status413PayloadTooLarge, GatewayErrorCodes.RequestTooLarge, "invalid_request_error",
            $"The request body is larger than the gateway's limit of {limit} bytes (Gateway:Limits:MaxRequestBodyBytes).", false);

    public static GatewayError ModelNotFound(string model) =>
        new(StatusCodes.Status404NotFound, GatewayErrorCodes.ModelNotFound, "invalid_request_error",
            $"The model '{model}' does not exist on this gateway. GET /v1/models lists the models your key may use.", false, "model");

    public static GatewayError UpstreamError(string message) =>
        new(StatusCodes.Status502BadGateway, GatewayErrorCodes.UpstreamError, "upstream_error", message, true);

    public static GatewayError UpstreamUnavailable(string message, bool shouldRetry, TimeSpan? retryAfter = null) =>
        new(StatusCodes.Status503ServiceUnavailable, GatewayErrorCodes.UpstreamUnavailable, "upstream_error", message, shouldRetry, null, retryAfter);

    public static GatewayError UpstreamTimeout(string message) =>
        new(StatusCodes.Status504GatewayTimeout, GatewayErrorCodes.UpstreamTimeout, "upstream_error", message, true);

    /// <summary>A tool call held for a person's approval past Gateway:Approvals:Wait: retry the same call to keep waiting.</summary>
    public static GatewayError ApprovalPending(string message, string approvalId) =>
        new(StatusCodes.Status409Conflict, GatewayErrorCodes.ApprovalPending, "invalid_request_error", message, true, null, TimeSpan.FromSeconds(1)) { ApprovalId = approvalId };

    /// <summary>An approver denied the held tool call; the message carries the approver's reason.</summary>
    public static GatewayError ApprovalDenied(string message, string approvalId) =>
        new(StatusCodes.Status403Forbidden, GatewayErrorCodes.ApprovalDenied, "permission_error", message, false) { ApprovalId = approvalId };

    /// <summary>A store the call needs (budgets, runs, approvals, recordings) did not answer, and the policy is to refuse: 503 store_unavailable, retry in 1 s.</summary>
    public static GatewayError StoreUnavailable(string message) =>
        new(StatusCodes.Status503ServiceUnavailable, GatewayErrorCodes.StoreUnavailable, "server_error", message, true, null, TimeSpan.FromSeconds(1));

    public static GatewayError Internal(string requestId) =>
        new(StatusCodes.Status500InternalServerError, GatewayErrorCodes.InternalError, "server_error",
            $"The gateway failed unexpectedly while handling this request (request id {requestId}). It was logged; retry, and report the request id if it persists.", true);

    /// <summary>The approval a held tool call waits for, sent as <c>X-Gateway-Approval-Id</c>.</summary>
    public string? ApprovalId { get; init; }

    /// <summary>Writes the error as the whole response, in the dialect of the route. Headers already set (X-Request-Id) are kept.</summary>
    public Task WriteAsync(HttpResponse response)
    {
        var anthropic = AnthropicError.IsAnthropicRoute(response.HttpContext.Request);
        response.StatusCode = anthropic ? AnthropicError.Status(this) : Status;
        response.ContentType = "application/json";
        var headers = response.Headers;
        headers["x-should-retry"] = ShouldRetry ? "true" : "false";
        if (RetryAfter is { } retryAfter)
        {
            headers[HeaderNames.RetryAfter] = Math.Max(1, (long)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        if (ApprovalId is { } approvalId)
        {
            headers[ApprovalIdHeader] = approvalId;
        }

        var buffer = new System.Buffers.ArrayBufferWriter<byte>(256);
        if (anthropic)
        {
            AnthropicError.WriteJson(this, buffer, response.Headers[Forwarding.GatewayHeaders.RequestId].ToString());
        }
        else
        {
            WriteJson(buffer);
        }

        response.ContentLength = buffer.WrittenCount;
        return response.Body.WriteAsync(buffer.WrittenMemory).AsTask();
    }

    /// <summary>The <c>{"error":{...}}</c> object, also used as an SSE error event's data.</summary>
    public void WriteJson(System.Buffers.IBufferWriter<byte> output)
    {
        using var writer = new Utf8JsonWriter(output);
        writer.WriteStartObject();
        writer.WriteStartObject("error");
        writer.WriteString("message", Message);
        writer.WriteString("type", Type);
        if (Param is null)
        {
            writer.WriteNull("param");
        }
        else
        {
            writer.WriteString("param", Param);
        }

        writer.WriteString("code", Code);
        writer.WriteEndObject();
        writer.WriteEndObject();
    }
}
