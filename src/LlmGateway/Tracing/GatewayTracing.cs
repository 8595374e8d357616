using System.Diagnostics;

namespace LlmGateway.Tracing;

/// <summary>
/// The gateway's <see cref="ActivitySource"/> ("LlmGateway"): one span per LLM call and per tool call, a child span per
/// upstream attempt, short children for admission and cache lookup. Without a listener (Gateway:Tracing off)
/// <see cref="ActivitySource.StartActivity(string, ActivityKind)"/> answers null and nothing is built.
/// </summary>
internal static class GatewayTracing
{
    public const string SourceName = "LlmGateway";

    public static readonly ActivitySource Source = new(SourceName, typeof(GatewayTracing).Assembly.GetName().Version?.ToString());

    /// <summary>The gateway span of the request being handled, or null when it is not traced.</summary>
    /// <remarks>
    /// A call or tool span is kind Server and is Activity.Current while its request is handled; a child span
    /// (admission, cache lookup, attempt) is Current only inside its own scope, and has it as Parent. ASP.NET Core's request activity is
    /// Current when the request is not traced, and is never written to.
    /// </remarks>
    public static Activity? CurrentServerSpan()
    {
        // The current span, or the call span above the attempt span that is current while an attempt runs.
        for (var span = Activity.Current; span is not null && ReferenceEquals(span.Source, Source); span = span.Parent)
        {
            if (span.Kind == ActivityKind.Server)
            {
                return span;
            }
        }

        return null;
    }

    /// <summary>A short child of the current gateway span (admission, cache lookup); null when the request is not traced.</summary>
    public static Activity? StartChild(string name) =>
        CurrentServerSpan() is { IsAllDataRequested: true } ? Source.StartActivity(name, ActivityKind.Internal) : null;
}
