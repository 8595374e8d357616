using System.Security.Cryptography;
using System.Text;

namespace LlmGateway.Configuration;

internal static class KeyHashing
{
    public static string Sha256Hex(string key)
    {
        Span<byte> hash = stackalloc byte[32];
        Sha256(key, hash);
        return Convert.ToHexStringLower(hash);
    }

    /// <summary>Hashes a presented key without allocating (keys are short).</summary>
    public static void Sha256(ReadOnlySpan<char> key, Span<byte> destination)
    {
        var max = Encoding.UTF8.GetMaxByteCount(key.Length);
        byte[]? rented = null;
        var buffer = max <= 512 ? stackalloc byte[512] : (rented = System.Buffers.ArrayPool<byte>.Shared.Rent(max));
        try
        {
            var length = Encoding.UTF8.GetBytes(key, buffer);
            SHA256.HashData(buffer[..length], destination);
        }
        finally
        {
            if (rented is not null)
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }
}
