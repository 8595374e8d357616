using LlmGateway.Forwarding;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace LlmGateway.Errors;

/// <summary>
/// The last line of defence: an exception anywhere in the pipeline (a store, the cache, the relay, a bug) becomes a
/// 500 <c>internal_error</c> in the caller's API shape with the request id, plus one error log line with the exception;
/// never an empty reply. When the answer had already begun (a stream), the connection is aborted so the caller sees a
/// cut, not a well-formed end.
/// </summary>
internal sealed partial class GatewayExceptionHandler(RequestDelegate next, ILogger<GatewayExceptionHandler> logger)
{
    public Task InvokeAsync(HttpContext context)
    {
        Task task;
        try
        {
            task = next(context);
        }
        catch (Exception exception)
        {
            return HandleAsync(context, exception);
        }

        return task.IsCompletedSuccessfully ? Task.CompletedTask : AwaitAsync(task, context);
    }

    private async Task AwaitAsync(Task task, HttpContext context)
    {
        try
        {
            await task;
        }
        catch (Exception exception)
        {
            await HandleAsync(context, exception);
        }
    }

    private async Task HandleAsync(HttpContext context, Exception exception)
    {
        if (exception is OperationCanceledException && context.RequestAborted.IsCancellationRequested)
        {
            return; // the caller left; nobody is there to answer
        }

        var requestId = context.Response.Headers.TryGetValue(GatewayHeaders.RequestId, out var id) && id.Count == 1 ? id[0]! : RequestIds.For(context);
        Unhandled(logger, exception, context.Request.Method, context.Request.Path.Value ?? "/", requestId);
        if (context.Response.HasStarted)
        {
            context.Abort();
            return;
        }

        context.Response.Clear();
        context.Response.Headers[GatewayHeaders.RequestId] = requestId;
        await GatewayError.Internal(requestId).WriteAsync(context.Response);
    }

    [LoggerMessage(EventId = GatewayEventIds.Unhandled, EventName = "Unhandled", Level = LogLevel.Error, Message = "Unhandled exception while handling {Method} {Path} (request {RequestId}); answered 500 internal_error")]
    private static partial void Unhandled(ILogger logger, Exception exception, string method, string path, string requestId);
}
