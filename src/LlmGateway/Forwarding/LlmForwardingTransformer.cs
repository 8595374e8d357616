using System.Buffers;
using System.Globalization;
using System.Net.Http.Headers;
using LlmGateway.Accounting;
using LlmGateway.Errors;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Forwarder;

namespace LlmGateway.Forwarding;

/// <summary>
/// The YARP transformer of the LLM routes. Requests: the caller's credentials out, the provider's in,
/// everything else as sent. Responses: the upstream's own 4xx pass through unchanged; a 2xx JSON body is
/// buffered (it is small, and the cost header must precede it) to read its usage; an SSE body is relayed
/// event by event by <see cref="SseRelay"/>; anything else becomes the gateway's own error. One shared
/// instance: the per-call state lives in <see cref="LlmCall"/>.
/// </summary>
internal sealed class LlmForwardingTransformer : HttpTransformer
{
    private readonly SseRelay _sseRelay;
    private readonly ILogger<LlmForwardingTransformer> _logger;

    public LlmForwardingTransformer(SseRelay sseRelay, ILogger<LlmForwardingTransformer> logger)
    {
        _sseRelay = sseRelay;
        _logger = logger;
    }

    public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
    {
        await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken);
        var call = httpContext.Features.GetRequiredFeature<LlmCall>();
        var provider = call.ServedProvider;
        proxyRequest.RequestUri = provider.UriFor(call.Endpoint);

        var headers = proxyRequest.Headers;
        Identity.CallerHeaders.Strip(headers);

        // The gateway reads usage out of the body, so it asks for it uncompressed.
        headers.Remove("Accept-Encoding");
        headers.TryAddWithoutValidation(GatewayHeaders.RequestId, call.RequestId);
        Tracing.UpstreamTraceContext.Apply(headers);

        if (provider.AuthHeaderValue is { } auth)
        {
            headers.TryAddWithoutValidation(provider.Options.AuthHeader, auth);
        }

        foreach (var (name, value) in provider.Options.Headers)
        {
            headers.Remove(name);
            headers.TryAddWithoutValidation(name, value);
        }

        call.UpstreamStartTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
    }

    public override async ValueTask<bool> TransformResponseAsync(HttpContext httpContext, HttpResponseMessage? proxyResponse, CancellationToken cancellationToken)
    {
        if (proxyResponse is null)
        {
            return false;
        }

        var call = httpContext.Features.GetRequiredFeature<LlmCall>();
        call.UpstreamHeadersTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
        httpContext.Features.Get<UpstreamAttemptTimer>()?.HeadersReceived();
        var status = (int)proxyResponse.StatusCode;
        call.UpstreamStatus = status;

        if (status is >= 200 and < 300)
        {
            var mediaType = proxyResponse.Content.Headers.ContentType?.MediaType;
            if (string.Equals(mediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase))
            {
                await CopyHeadersAsync(httpContext, proxyResponse, cancellationToken);
                httpContext.Response.Headers.ContentLength = null;
                await _sseRelay.RelayAsync(httpContext, proxyResponse, call);
                return false;
            }

            await RelayJsonAsync(httpContext, proxyResponse, call, cancellationToken);
            return false;
        }

        if (Resilience.RetryAfter.IsRetryableStatus(status))
        {
            // Nothing is sent to the caller: the handler retries, falls back or answers for it.
            call.RetryableStatus = status;
            call.UpstreamRetryAfter = Resilience.RetryAfter.Read(proxyResponse.Headers, DateTimeOffset.UtcNow);
            call.Outcome = CallOutcome.UpstreamFailed;
            call.FailureDetail = $"upstream answered {status}";
            call.UpstreamEndTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            ForwardingLog.UpstreamFailed(_logger, call.RequestId, call.ServedProvider.Name, status);
            return false;
        }

        if (status is >= 400 and < 500)
        {
            // The provider's own answer about this request: the caller gets it unchanged.
            call.Outcome = CallOutcome.UpstreamStatus;
            await CopyHeadersAsync(httpContext, proxyResponse, cancellationToken);
            return true;
        }

        call.Outcome = CallOutcome.UpstreamFailed;
        call.FailureDetail = $"upstream answered {status}";
        call.UpstreamEndTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
        call.PendingError = GatewayError.UpstreamError(
            $"The provider '{call.ServedProvider.Name}' answered {status} {proxyResponse.ReasonPhrase} for model '{call.ServedModel.Name}'.");
        ForwardingLog.UpstreamFailed(_logger, call.RequestId, call.ServedProvider.Name, status);
        return false;
    }

    private async Task CopyHeadersAsync(HttpContext httpContext, HttpResponseMessage proxyResponse, CancellationToken cancellationToken)
    {
        await base.TransformResponseAsync(httpContext, proxyResponse, cancellationToken);
        var call = httpContext.Features.GetRequiredFeature<LlmCall>();
        var headers = httpContext.Response.Headers;

        // Only the provider's headers can need dropping (the gateway's own X-Request-Id is written again below): one
        // pass over the handful it sent (a struct enumerator) instead of ten removals from Kestrel's collection.
        foreach (var header in proxyResponse.Headers.NonValidated)
        {
            if (!GatewayHeaders.ProviderResponseHeadersToDropSet.Contains(header.Key))
            {
                continue;
            }

            if (string.Equals(header.Key, GatewayHeaders.RequestId, StringComparison.OrdinalIgnoreCase))
            {
                foreach (var upstreamId in header.Value)
                {
                    headers[GatewayHeaders.UpstreamRequestId] = upstreamId;
                    break;
                }
            }

            headers.Remove(header.Key);
        }

        WriteGatewayHeaders(headers, call);
    }

    /// <summary>What every answer says about how it was served.</summary>
    internal static void WriteGatewayHeaders(IHeaderDictionary headers, LlmCall call)
    {
        headers[GatewayHeaders.RequestId] = call.RequestId;
        headers[GatewayHeaders.Model] = call.ServedModel.Name;
        headers[GatewayHeaders.Attempts] = Budgets.RateLimitHeaders.Number(call.Attempts);
        if (call.Downgrade is { } downgrade)
        {
            headers[GatewayHeaders.Downgrade] = downgrade;
        }

        if (call.Deployment is { } deployment)
        {
            headers[GatewayHeaders.Deployment] = deployment.Name;
        }

        Budgets.RateLimitHeaders.Write(headers, call.Admission, Configuration.ApiDialects.Of(call.Endpoint) == Configuration.ApiDialect.Anthropic);
    }

    private async Task RelayJsonAsync(HttpContext httpContext, HttpResponseMessage proxyResponse, LlmCall call, CancellationToken cancellationToken)
    {
        var limit = call.Limits.MaxResponseBodyBytes;
        var declared = proxyResponse.Content.Headers.ContentLength;
        if (declared > limit)
        {
            FailGarbage(call, $"The provider's response ({declared} bytes) is larger than the gateway's limit of {limit} bytes (Gateway:Limits:MaxResponseBodyBytes).");
            return;
        }

        // Reads at most one byte past the limit (which tells "too large"), whatever size the pool rounds a buffer up to.
        var cap = (int)Math.Min(limit + 1, Array.MaxLength);
        var buffer = ArrayPool<byte>.Shared.Rent(declared is > 0 and < int.MaxValue ? (int)Math.Min(declared.Value, cap) : Math.Min(16 * 1024, cap));
        var length = 0;
        try
        {
            await using (var body = await proxyResponse.Content.ReadAsStreamAsync(cancellationToken))
            {
                while (true)
                {
                    var room = Math.Min(buffer.Length, cap);
                    if (length == room)
                    {
                        if (length >= cap)
                        {
                            FailGarbage(call, $"The provider's response is larger than the gateway's limit of {limit} bytes (Gateway:Limits:MaxResponseBodyBytes).");
                            return;
                        }

                        var bigger = ArrayPool<byte>.Shared.Rent((int)Math.Min(cap, (long)buffer.Length * 2));
                        buffer.AsSpan(0, length).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                        room = Math.Min(buffer.Length, cap);
                    }

                    var read = await body.ReadAsync(buffer.AsMemory(length, room - length), cancellationToken);
                    if (read == 0)
                    {
                        break;
                    }

                    length += read;
                }
            }

            if (length > limit)
            {
                FailGarbage(call, $"The provider's response is larger than the gateway's limit of {limit} bytes (Gateway:Limits:MaxResponseBodyBytes).");
                return;
            }

            call.UpstreamEndTimestamp = System.Diagnostics.Stopwatch.GetTimestamp();
            var bytes = buffer.AsSpan(0, length);
            var messages = call.Endpoint is Configuration.LlmEndpoint.Messages or Configuration.LlmEndpoint.CountTokens;
            if (!UsageReader.TryRead(bytes, out var info, messages: messages))
            {
                FailGarbage(call, $"The provider '{call.ServedProvider.Name}' answered 200 with a body that is not valid JSON.");
                return;
            }

            if (info.HasUsage)
            {
                call.Usage = info.Usage;
                call.HasUsage = true;
            }

            call.DeliveredTextBytes = info.TextBytes;
            call.Answer.Read(bytes);
            if (!info.HasUsage && call.ServedModel.Tokenizer.HasTokenizer())
            {
                // No usage to charge: read the answer's text once more, to count it (LlmCall.SettleUsage).
                (call.DeliveredText ??= new DeliveredText()).Clear();
                UsageReader.TryRead(bytes, out _, call.DeliveredText, messages);
            }

            call.Capture?.OnJson(bytes);
            Tracing.LlmCallSpans.CaptureAnswer(bytes);
            call.Outcome = CallOutcome.Completed;
            call.SettleUsage();

            await CopyHeadersAsync(httpContext, proxyResponse, cancellationToken);
            var response = httpContext.Response;
            response.Headers[GatewayHeaders.CostUsd] = call.CostUsd.ToString("0.##########", CultureInfo.InvariantCulture);
            response.ContentLength = length;
            await response.Body.WriteAsync(buffer.AsMemory(0, length), httpContext.RequestAborted);
        }
        catch (Exception ex) when (ex is IOException or HttpRequestException && !httpContext.RequestAborted.IsCancellationRequested)
        {
            FailGarbage(call, $"The connection to provider '{call.ServedProvider.Name}' broke while reading its response.");
            call.Outcome = CallOutcome.UpstreamFailed;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void FailGarbage(LlmCall call, string message)
    {
        call.Outcome = CallOutcome.UpstreamGarbage;
        call.FailureDetail = message;
        call.PendingError = GatewayError.UpstreamError(message);
        ForwardingLog.UpstreamGarbage(_logger, call.RequestId, call.ServedProvider.Name, message);
    }
}

/// <summary>Per-call limits taken from the config snapshot the call started with.</summary>
internal sealed record LlmCallLimits(long MaxResponseBodyBytes, TimeSpan StreamIdleTimeout);
