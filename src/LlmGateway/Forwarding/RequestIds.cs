using System.Security.Cryptography;
using LlmGateway.Identity;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Forwarding;

/// <summary>X-Request-Id: the caller's when it sent a sane one, else a new one; echoed on the response.</summary>
internal static class RequestIds
{
    public static string For(HttpContext context)
    {
        var headers = context.Request.Headers;
        var id = headers.TryGetValue(GatewayHeaders.RequestId, out var values) && values.Count == 1 && CallerAuthenticator.IsValidId(values[0])
            ? values[0]!
            : New();
        context.Response.Headers[GatewayHeaders.RequestId] = id;
        return id;
    }

    private const int IdBytes = 12;

    // Random bytes fetched 4 KB at a time per thread: one call into the OS/OpenSSL generator costs about as much
    // for 4 KB as for 12 bytes (~1 us), and was paid by every request. The bytes are the same CSPRNG output,
    // each handed out once.
    private const int PoolBytes = 4096;

    [ThreadStatic]
    private static byte[]? t_pool;

    [ThreadStatic]
    private static int t_next;

    public static string New()
    {
        var pool = t_pool;
        if (pool is null || t_next > PoolBytes - IdBytes)
        {
            pool = t_pool ??= new byte[PoolBytes];
            RandomNumberGenerator.Fill(pool);
            t_next = 0;
        }

        ReadOnlySpan<byte> bytes = pool.AsSpan(t_next, IdBytes);
        t_next += IdBytes;
        return string.Create(28, bytes, static (chars, b) =>
        {
            "req_".CopyTo(chars);
            Convert.TryToHexStringLower(b, chars[4..], out _);
        });
    }
}
