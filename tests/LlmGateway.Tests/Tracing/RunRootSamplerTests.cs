using System.Diagnostics;
using LlmGateway.Tracing;
using OpenTelemetry.Trace;

namespace LlmGateway.Tests.Tracing;

public sealed class RunRootSamplerTests
{
    private static SamplingDecision Decide(double ratio, ActivityContext parent, ActivityTraceId traceId) =>
        new RunRootSampler(ratio).ShouldSample(new SamplingParameters(parent, traceId, "chat m", ActivityKind.Server)).Decision;

    [Fact]
    public void RunRoot_IsSampledByTheRatioOnTheRunsTraceId_NotByItsUnsampledFlag()
    {
        var run = RunTraceIds.For("run-1");
        var runRoot = new ActivityContext(run, default, ActivityTraceFlags.None);

        // A parent-based sampler would drop it (its parent context is not sampled); the ratio decides instead.
        Assert.Equal(SamplingDecision.RecordAndSample, Decide(1, runRoot, run));
        Assert.Equal(SamplingDecision.Drop, Decide(0, runRoot, run));
    }

    [Fact]
    public void RunRoot_AtAPartialRatio_IsKeptOrDroppedAlikeForEveryCallOfTheRun()
    {
        var decisions = Enumerable.Range(0, 200).Select(i => RunTraceIds.For("run-" + i))
            .Select(id => Decide(0.5, new ActivityContext(id, default, ActivityTraceFlags.None), id)).ToList();
        var again = Enumerable.Range(0, 200).Select(i => RunTraceIds.For("run-" + i))
            .Select(id => Decide(0.5, new ActivityContext(id, default, ActivityTraceFlags.None), id)).ToList();

        Assert.Equal(decisions, again);
        Assert.Contains(SamplingDecision.Drop, decisions);
        Assert.Contains(SamplingDecision.RecordAndSample, decisions);
    }

    [Fact]
    public void CallersTraceParent_IsFollowed_WhateverTheRatio()
    {
        var trace = ActivityTraceId.CreateRandom();
        var sampled = new ActivityContext(trace, ActivitySpanId.CreateRandom(), ActivityTraceFlags.Recorded, isRemote: true);
        var notSampled = new ActivityContext(trace, ActivitySpanId.CreateRandom(), ActivityTraceFlags.None, isRemote: true);

        Assert.Equal(SamplingDecision.RecordAndSample, Decide(0, sampled, trace));
        Assert.Equal(SamplingDecision.Drop, Decide(1, notSampled, trace));
    }
}
