namespace LlmGateway.Replay;

/// <summary>One recorded run: its id, how many steps it holds, when its last step was recorded, and the bytes its steps take.</summary>
public sealed record RecordingInfo(string RunId, int Steps, DateTimeOffset UpdatedAt, DateTimeOffset ExpiresAt, long Bytes = 0);

/// <summary>
/// Where recorded runs (X-Gateway-Record) live: per run, its steps in order, each an opaque UTF-8 JSON object;
/// and the replay cursors of the runs replaying them. In memory by default, in Redis when Gateway:Redis is set.
/// Implementations bound what they keep (Gateway:Cache:RecordingMaxRuns, RecordingMaxRunBytes, RecordingMaxBytes).
/// </summary>
public interface IRecordingStore
{
    /// <summary>
    /// Appends a step to the run's recording and keeps the recording for <paramref name="ttl"/> from now; returns its step
    /// number (1-based), or 0 when the recording is full (Gateway:Cache:RecordingMaxRunBytes): then neither this step
    /// nor any later one of the run is recorded, so a recording is always a prefix of its run.
    /// </summary>
    ValueTask<int> AppendAsync(string runId, byte[] step, TimeSpan ttl, CancellationToken cancellationToken = default);

    /// <summary>Step <paramref name="step"/> (1-based) of a recording, or null when it has no such step.</summary>
    ValueTask<byte[]?> GetStepAsync(string runId, int step, CancellationToken cancellationToken = default);

    /// <summary>Every step of a recording in order, or null when there is no such recording.</summary>
    ValueTask<IReadOnlyList<byte[]>?> GetAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>The recordings kept now.</summary>
    ValueTask<IReadOnlyList<RecordingInfo>> ListAsync(CancellationToken cancellationToken = default);

    /// <summary>Deletes a recording; false when there was none.</summary>
    ValueTask<bool> DeleteAsync(string runId, CancellationToken cancellationToken = default);

    /// <summary>Advances the cursor of run <paramref name="replayRunId"/> replaying <paramref name="recordedRunId"/>: the step it is at now (1-based).</summary>
    ValueTask<int> NextReplayStepAsync(string recordedRunId, string replayRunId, TimeSpan ttl, CancellationToken cancellationToken = default);
}
