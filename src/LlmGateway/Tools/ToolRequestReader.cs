using LlmGateway.Errors;
using LlmGateway.Identity;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Tools;

/// <summary>What the tool gateway reads from a request before deciding on it: the path's shape, the idempotency key, the body.</summary>
internal static class ToolRequestReader
{
    /// <summary>Idempotency-Key, or one derived from X-Run-Id and X-Gateway-Step: the same step of the same run is one call.</summary>
    public static GatewayError? ReadIdempotencyKey(HttpRequest request, string? runId, out string? key)
    {
        key = null;
        var headers = request.Headers;
        if (headers.TryGetValue(ToolConstants.IdempotencyKeyHeader, out var values) && values.Count > 0)
        {
            var value = values[0];
            if (values.Count > 1 || string.IsNullOrEmpty(value) || value.Length > ToolConstants.MaxIdempotencyKeyLength || !IsVisibleAscii(value))
            {
                return GatewayError.InvalidRequest($"Idempotency-Key must be one value of 1 to {ToolConstants.MaxIdempotencyKeyLength} visible ASCII characters.", ToolConstants.IdempotencyKeyHeader);
            }

            key = value;
            return null;
        }

        if (headers.TryGetValue(ToolConstants.StepHeader, out var steps) && steps.Count > 0)
        {
            var step = steps[0];
            if (runId is null)
            {
                return GatewayError.InvalidRequest("X-Gateway-Step identifies a step of a run: send X-Run-Id with it (or an Idempotency-Key).", ToolConstants.StepHeader);
            }

            if (steps.Count > 1 || !CallerAuthenticator.IsValidId(step))
            {
                return GatewayError.InvalidRequest($"X-Gateway-Step must be one value of 1 to {CallerAuthenticator.MaxRunIdLength} characters: letters, digits and . _ : -", ToolConstants.StepHeader);
            }

            key = "run:" + runId + ":step:" + step;
        }

        return null;
    }

    /// <summary>
    /// Kestrel decodes the path but keeps %2F encoded and has removed dot segments; what is left could still be read as
    /// another path by a tool that decodes again, so it is refused rather than matched segment by segment.
    /// </summary>
    public static bool IsPlainPath(string path)
    {
        if (path.Contains("%2F", StringComparison.OrdinalIgnoreCase) || path.Contains("%5C", StringComparison.OrdinalIgnoreCase) || path.Contains('\\'))
        {
            return false;
        }

        foreach (var segment in path.Split('/'))
        {
            if (segment is "." or "..")
            {
                return false;
            }
        }

        return true;
    }

    public static bool HasBody(HttpRequest request) =>
        request.ContentLength > 0 || (request.ContentLength is null && request.Headers.TransferEncoding.Count > 0);

    public static async Task<(ReadOnlyMemory<byte> Body, GatewayError? Error)> ReadBodyAsync(HttpRequest request, long limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength > limit)
        {
            return (default, GatewayError.RequestTooLarge(limit));
        }

        using var buffer = new MemoryStream(request.ContentLength is > 0 and < 1 << 20 ? (int)request.ContentLength : 4096);
        var chunk = new byte[16 * 1024];
        int read;
        try
        {
            while ((read = await request.Body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
            {
                if (buffer.Length + read > limit)
                {
                    return (default, GatewayError.RequestTooLarge(limit));
                }

                buffer.Write(chunk, 0, read);
            }
        }
        catch (BadHttpRequestException exception)
        {
            // Cut short by the client (as RequestBodyReader): its mistake, a 400, and the tool is not called.
            return (default, GatewayError.InvalidRequest($"The request body could not be read: {exception.Message}"));
        }

        return (buffer.ToArray(), null);
    }

    private static bool IsVisibleAscii(string value)
    {
        foreach (var c in value)
        {
            if (c is < '!' or > '~')
            {
                return false;
            }
        }

        return true;
    }
}
