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

    public static string New()
    {
        Span<byte> bytes = stackalloc byte[12];
        RandomNumberGenerator.Fill(bytes);
        return string.Create(28, bytes, static (chars, b) =>
        {
            "req_".CopyTo(chars);
            Convert.TryToHexStringLower(b, chars[4..], out _);
        });
    }
}
