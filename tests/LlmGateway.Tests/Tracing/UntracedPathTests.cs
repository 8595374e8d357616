using System.Diagnostics;
using LlmGateway.Errors;
using LlmGateway.Tracing;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Tests.Tracing;

/// <summary>With tracing off (nothing listens to the "LlmGateway" source) the span hooks on the request path allocate nothing.</summary>
public sealed class UntracedPathTests
{
    [Fact]
    public void SpanHooks_WithoutAListener_DoNotAllocate()
    {
        // No tracer provider is built in this test process; were one listening, this test would measure nothing.
        Assert.False(GatewayTracing.Source.HasListeners());
        var request = new DefaultHttpContext().Request;
        request.Headers["X-Run-Id"] = "run-1";
        request.Headers["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        var refusal = GatewayError.InvalidRequest("no");
        var audit = new LlmGateway.Tools.ToolCallAudit(0, "req", "GET");

        // ASP.NET Core's request activity is current while a request is handled: the hooks must leave it alone.
        using var aspNetCore = new Activity("Microsoft.AspNetCore.Hosting.HttpRequestIn").Start();
        void Hooks()
        {
            using var call = LlmCallSpans.Start(request, LlmGateway.Configuration.LlmEndpoint.ChatCompletions);
            using var tool = ToolCallSpans.Start(request, "jira");
            LlmCallSpans.CacheLooked(GatewayTracing.StartChild(TracingTags.CacheLookupSpan), "MISS");
            LlmCallSpans.Admitted(GatewayTracing.StartChild(TracingTags.AdmissionSpan), refusal);
            LlmCallSpans.CaptureAnswer("{}"u8);
            ServerSpans.RetryWait(TimeSpan.FromMilliseconds(5), 1, "429");
            ServerSpans.Fail("invalid_request_error", 400);
            ToolCallSpans.Complete(tool, audit, 200);
        }

        Hooks();
        var least = long.MaxValue;
        for (var attempt = 0; attempt < 5 && least > 0; attempt++)
        {
            var before = GC.GetAllocatedBytesForCurrentThread();
            for (var i = 0; i < 1_000; i++)
            {
                Hooks();
            }

            least = Math.Min(least, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.Equal(0, least);
        Assert.Same(aspNetCore, Activity.Current);
        Assert.Null(aspNetCore.GetTagItem(TracingTags.ErrorType));
    }
}
