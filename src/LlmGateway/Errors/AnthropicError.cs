using System.Buffers;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Errors;

/// <summary>
/// Anthropic's dialect of a <see cref="GatewayError"/>: <c>{"type":"error","error":{"type":...,"message":...}}</c> with
/// Anthropic's error types and statuses, for the routes of its Messages API. The refusal is the same (code, message,
/// x-should-retry, retry-after); only its shape and a few statuses differ: an overloaded upstream is 529, as Anthropic
/// answers it. The gateway's own code rides along as <c>error.code</c>, which Anthropic's SDKs ignore.
/// </summary>
internal static class AnthropicError
{
    public const string Path = "/v1/messages";

    /// <summary>The routes whose callers are Anthropic clients.</summary>
    public static bool IsAnthropicRoute(HttpRequest request) => request.Path.StartsWithSegments(Path, StringComparison.OrdinalIgnoreCase);

    public static int Status(in GatewayError error) => error.Overloaded ? 529 : error.Status;

    /// <summary>Anthropic's error type for the error's status (its "Errors" page: HTTP errors).</summary>
    public static string Type(in GatewayError error) => Status(error) switch
    {
        StatusCodes.Status400BadRequest or StatusCodes.Status409Conflict or StatusCodes.Status422UnprocessableEntity => "invalid_request_error",
        StatusCodes.Status401Unauthorized => "authentication_error",
        StatusCodes.Status403Forbidden => "permission_error",
        StatusCodes.Status404NotFound => "not_found_error",
        StatusCodes.Status413PayloadTooLarge => "request_too_large",
        StatusCodes.Status429TooManyRequests => "rate_limit_error",
        StatusCodes.Status504GatewayTimeout => "timeout_error",
        529 => "overloaded_error",
        _ => "api_error",
    };

    /// <summary>The error object, also an SSE <c>event: error</c>'s data.</summary>
    public static void WriteJson(in GatewayError error, IBufferWriter<byte> output, string? requestId = null)
    {
        using var writer = new Utf8JsonWriter(output);
        writer.WriteStartObject();
        writer.WriteString("type", "error");
        writer.WriteStartObject("error");
        writer.WriteString("type", Type(error));
        writer.WriteString("message", error.Message);
        writer.WriteString("code", error.Code);
        if (error.Param is { } param)
        {
            writer.WriteString("param", param);
        }

        writer.WriteEndObject();
        if (!string.IsNullOrEmpty(requestId))
        {
            writer.WriteString("request_id", requestId);
        }

        writer.WriteEndObject();
    }
}
