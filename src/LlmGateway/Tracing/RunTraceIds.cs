using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace LlmGateway.Tracing;

/// <summary>
/// The trace id of a run whose calls came without a traceparent: the first 16 bytes of SHA-256 of the run id, so every
/// call of the run, on any replica, lands in one trace without any shared state.
/// </summary>
internal static class RunTraceIds
{
    public static ActivityTraceId For(string runId)
    {
        // Run ids are at most 128 characters (CallerAuthenticator.IsValidId): UTF-8 fits on the stack.
        Span<byte> utf8 = stackalloc byte[Encoding.UTF8.GetMaxByteCount(runId.Length)];
        var length = Encoding.UTF8.GetBytes(runId, utf8);
        Span<byte> hash = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(utf8[..length], hash);

        // An all-zero trace id is invalid in W3C trace context; 2^-128 away, but a run id must never produce it.
        if (hash[..16].IndexOfAnyExcept((byte)0) < 0)
        {
            hash[15] = 1;
        }

        return ActivityTraceId.CreateFromBytes(hash[..16]);
    }
}
