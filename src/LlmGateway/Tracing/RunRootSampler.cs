using System.Diagnostics;
using OpenTelemetry.Trace;

namespace LlmGateway.Tracing;

/// <summary>
/// Parent-based sampling with a trace-id ratio for roots, where the root of a run's trace (a parent context with the
/// run's trace id and no span id, <see cref="ServerSpans"/>) counts as a root: it is sampled by the ratio on the run's
/// trace id, so all calls of a run are kept or dropped together, on every replica.
/// </summary>
internal sealed class RunRootSampler : Sampler
{
    private readonly TraceIdRatioBasedSampler _ratio;
    private readonly ParentBasedSampler _parentBased;

    public RunRootSampler(double ratio)
    {
        _ratio = new TraceIdRatioBasedSampler(ratio);
        _parentBased = new ParentBasedSampler(_ratio);
        Description = $"RunRootSampler{{{ratio}}}";
    }

    public override SamplingResult ShouldSample(in SamplingParameters samplingParameters) =>
        samplingParameters.ParentContext.TraceId != default && samplingParameters.ParentContext.SpanId == default
            ? _ratio.ShouldSample(samplingParameters)
            : _parentBased.ShouldSample(samplingParameters);
}
