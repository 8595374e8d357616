using System.Buffers;
using LlmGateway.Errors;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Forwarding;

/// <summary>
/// Reads a whole request body into one pooled array, refusing bodies over the limit before reading them
/// when Content-Length says so, and as soon as the limit is passed otherwise. The body is read once: it is
/// parsed, and a retry resends the same bytes. A body the client cut short is a 400 invalid_request.
/// </summary>
internal static class RequestBodyReader
{
    public static async ValueTask<(byte[]? Buffer, int Length, GatewayError? Error)> ReadAsync(HttpRequest request, long limit, CancellationToken cancellationToken)
    {
        var declared = request.ContentLength;
        if (declared > limit)
        {
            return (null, 0, GatewayError.RequestTooLarge(limit));
        }

        var buffer = ArrayPool<byte>.Shared.Rent(declared is > 0 ? (int)declared.Value : 4096);
        var length = 0;
        try
        {
            var body = request.Body;
            while (true)
            {
                if (length == buffer.Length)
                {
                    if (length >= limit)
                    {
                        // One byte past the limit is proof enough; stop reading.
                        var probe = new byte[1];
                        if (await body.ReadAsync(probe, cancellationToken) > 0)
                        {
                            ArrayPool<byte>.Shared.Return(buffer);
                            return (null, 0, GatewayError.RequestTooLarge(limit));
                        }

                        break;
                    }

                    var bigger = ArrayPool<byte>.Shared.Rent((int)Math.Min(limit, (long)buffer.Length * 2));
                    buffer.AsSpan(0, length).CopyTo(bigger);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = bigger;
                }

                var read = await body.ReadAsync(buffer.AsMemory(length, (int)Math.Min(buffer.Length - length, limit - length + 1)), cancellationToken);
                if (read == 0)
                {
                    break;
                }

                length += read;
                if (length > limit)
                {
                    ArrayPool<byte>.Shared.Return(buffer);
                    return (null, 0, GatewayError.RequestTooLarge(limit));
                }
            }
        }
        catch (BadHttpRequestException exception)
        {
            // The client stopped sending before the length it declared (or sent a malformed chunk): its mistake, a
            // 400 in its API shape if it still listens, never a 500 and an error line.
            ArrayPool<byte>.Shared.Return(buffer);
            return (null, 0, GatewayError.InvalidRequest($"The request body could not be read: {exception.Message}"));
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }

        if (length == 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            return (null, 0, GatewayError.InvalidRequest("The request has no body. Send a JSON object with at least a 'model'."));
        }

        return (buffer, length, null);
    }
}
