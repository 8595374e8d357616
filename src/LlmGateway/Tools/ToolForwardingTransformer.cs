using System.Buffers;
using System.Globalization;
using LlmGateway.Forwarding;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.Tools;

/// <summary>
/// The YARP transformer of /tools: the caller's credentials and the gateway's own headers out, the tool's configured
/// headers in, the path below /tools/{tool} appended to the tool's base URL. Responses stream through unchanged,
/// except a transient status held back for a retry, and keyed calls, whose response is buffered (up to a limit) to
/// be stored for replay. One shared instance: the per-call state is the <see cref="ToolCall"/> feature.
/// </summary>
internal sealed class ToolForwardingTransformer : HttpTransformer
{
    private static readonly string[] NotStored =
    [
        GatewayHeaders.RequestId, GatewayHeaders.Attempts, HeaderNames.ContentLength, HeaderNames.TransferEncoding,
        HeaderNames.Connection, HeaderNames.KeepAlive, HeaderNames.Date, HeaderNames.Server,
    ];

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        var call = httpContext.Features.GetRequiredFeature<ToolCall>();
        proxyRequest.RequestUri = call.Destination;

        var headers = proxyRequest.Headers;
        Identity.CallerHeaders.Strip(headers);
        headers.Remove(ToolConstants.IdempotencyKeyHeader);

        headers.TryAddWithoutValidation(GatewayHeaders.RequestId, call.RequestId);
        Tracing.UpstreamTraceContext.Apply(headers);
        if (call.IdempotencyKey is { } key)
        {
            // Tools that deduplicate by key (Stripe and the like) then also see one effect per key.
            headers.TryAddWithoutValidation(ToolConstants.IdempotencyKeyHeader, key);
        }

        foreach (var (name, value) in call.Route.Headers)
        {
            headers.Remove(name);
            headers.TryAddWithoutValidation(name, value);
        }
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        if (proxyResponse is null)
        {
            return false;
        }

        var call = httpContext.Features.GetRequiredFeature<ToolCall>();
        var status = (int)proxyResponse.StatusCode;
        call.UpstreamStatus = status;
        if (call.MayHoldBack(status))
        {
            call.HeldBack = true;
            call.HeldBackRetryAfter = RetryAfter(proxyResponse);
            return false;
        }

        if (!call.BufferResponse)
        {
            call.StopAttemptTimer();
            await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
            AddGatewayHeaders(httpContext.Response.Headers, call);
            call.ResponseRelayed = true;
            return true;
        }

        await RelayBufferedAsync(httpContext, proxyResponse, call, cancellationToken);
        return false;
    }

    private async Task RelayBufferedAsync(HttpContext httpContext, HttpResponseMessage proxyResponse, ToolCall call, CancellationToken cancellationToken)
    {
        var limit = call.MaxStoredBytes;
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        var length = 0;
        var overflow = false;
        Stream? body = null;
        try
        {
            try
            {
                body = await proxyResponse.Content.ReadAsStreamAsync(cancellationToken);
                while (true)
                {
                    if (length == buffer.Length)
                    {
                        if (length > limit)
                        {
                            overflow = true;
                            break;
                        }

                        var bigger = ArrayPool<byte>.Shared.Rent((int)Math.Min(limit + 1, (long)buffer.Length * 2));
                        buffer.AsSpan(0, length).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }

                    var read = await body.ReadAsync(buffer.AsMemory(length, (int)Math.Min(buffer.Length - length, limit + 1 - length)), cancellationToken);
                    if (read == 0)
                    {
                        break;
                    }

                    length += read;
                    if (length > limit)
                    {
                        overflow = true;
                        break;
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or HttpRequestException && !httpContext.RequestAborted.IsCancellationRequested)
            {
                // Nothing reached the caller yet: the handler answers (and may retry) as for a failed attempt.
                call.BodyFailure = call.AttemptTimeout?.IsCancellationRequested == true ? ToolAttemptKind.Timeout : ToolAttemptKind.ConnectionFailed;
                return;
            }

            call.StopAttemptTimer();
            await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
            var response = httpContext.Response;
            var stored = Snapshot(response.Headers);
            AddGatewayHeaders(response.Headers, call);
            call.ResponseRelayed = true;
            if (!overflow)
            {
                response.ContentLength = length;
                await response.Body.WriteAsync(buffer.AsMemory(0, length), httpContext.RequestAborted);
                call.Stored = new StoredToolResponse(call.UpstreamStatus, stored, buffer.AsSpan(0, length).ToArray());
                return;
            }

            // Too large to keep: the caller still gets all of it, repeats get its status and headers only.
            call.Stored = new StoredToolResponse(call.UpstreamStatus, stored, null);
            await response.Body.WriteAsync(buffer.AsMemory(0, length), httpContext.RequestAborted);
            await body!.CopyToAsync(response.Body, httpContext.RequestAborted);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            if (body is not null)
            {
                await body.DisposeAsync();
            }
        }
    }

    private static List<KeyValuePair<string, string[]>> Snapshot(IHeaderDictionary headers)
    {
        var stored = new List<KeyValuePair<string, string[]>>(headers.Count);
        foreach (var (name, values) in headers)
        {
            if (Array.FindIndex(NotStored, n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase)) < 0)
            {
                stored.Add(new(name, values.ToArray()!));
            }
        }

        return stored;
    }

    private static void AddGatewayHeaders(IHeaderDictionary headers, ToolCall call)
    {
        headers[GatewayHeaders.RequestId] = call.RequestId;
        headers[GatewayHeaders.Attempts] = call.Attempts.ToString(CultureInfo.InvariantCulture);
        if (call.CacheHeader is { } cache)
        {
            headers[ToolConstants.CacheHeader] = cache;
        }
    }

    /// <summary>Retry-After (seconds or an HTTP date) or retry-after-ms, as OpenAI-style APIs send it.</summary>
    internal static TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        if (response.Headers.TryGetValues("retry-after-ms", out var ms)
            && double.TryParse(ms.FirstOrDefault(), NumberStyles.Float, CultureInfo.InvariantCulture, out var milliseconds) && milliseconds >= 0)
        {
            return TimeSpan.FromMilliseconds(milliseconds);
        }

        if (response.Headers.RetryAfter is { } retryAfter)
        {
            if (retryAfter.Delta is { } delta)
            {
                return delta;
            }

            if (retryAfter.Date is { } date)
            {
                var wait = date - DateTimeOffset.UtcNow;
                return wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
            }
        }

        return null;
    }
}
