using LlmGateway.Configuration;
using LlmGateway.Errors;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace LlmGateway.Identity;

/// <summary>
/// Finds the gateway key a request presents (Authorization: Bearer, api-key or x-api-key) and maps it
/// to its caller. The key is hashed and looked up by digest; it is never stored, logged or echoed.
/// </summary>
internal static class CallerAuthenticator
{
    public const int MaxRunIdLength = 128;

    public static GatewayError? Authenticate(HttpRequest request, GatewayConfig config, out CallerKey caller)
    {
        caller = null!;
        var presented = PresentedKey(request.Headers);
        if (presented.IsEmpty)
        {
            return GatewayError.InvalidApiKey("No API key provided. Send your gateway key as 'Authorization: Bearer <key>'.");
        }

        Span<byte> digest = stackalloc byte[32];
        KeyHashing.Sha256(presented, digest);
        if (!config.TryGetKey(new Sha256Key(digest), out caller))
        {
            return GatewayError.InvalidApiKey("The API key is not a key of this gateway.");
        }

        return null;
    }

    private static ReadOnlySpan<char> PresentedKey(IHeaderDictionary headers)
    {
        var authorization = headers.Authorization;
        if (authorization.Count > 0 && authorization[0] is { } value)
        {
            var span = value.AsSpan().Trim();
            if (span.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
            {
                return span[7..].Trim();
            }
        }

        if (headers.TryGetValue("api-key", out var apiKey) && apiKey.Count > 0)
        {
            return apiKey[0].AsSpan().Trim();
        }

        if (headers.TryGetValue("x-api-key", out var xApiKey) && xApiKey.Count > 0)
        {
            return xApiKey[0].AsSpan().Trim();
        }

        return default;
    }

    /// <summary>Reads X-Run-Id: up to 128 characters of letters, digits and <c>._:-</c>.</summary>
    public static GatewayError? ReadRunId(HttpRequest request, out string? runId)
    {
        runId = null;
        if (!request.Headers.TryGetValue("X-Run-Id", out var values) || values.Count == 0 || string.IsNullOrEmpty(values[0]))
        {
            return null;
        }

        var value = values[0]!;
        if (values.Count > 1 || !IsValidId(value))
        {
            return GatewayError.InvalidRequest($"X-Run-Id must be one value of 1 to {MaxRunIdLength} characters: letters, digits and . _ : -", "X-Run-Id");
        }

        runId = value;
        return null;
    }

    /// <summary>True for ids safe to log and to use in store keys.</summary>
    public static bool IsValidId(ReadOnlySpan<char> value)
    {
        if (value.Length is 0 or > MaxRunIdLength)
        {
            return false;
        }

        foreach (var c in value)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or ':'))
            {
                return false;
            }
        }

        return true;
    }
}
