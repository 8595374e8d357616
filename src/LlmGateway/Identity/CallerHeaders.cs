using System.Net.Http.Headers;
using LlmGateway.Forwarding;
using Microsoft.AspNetCore.Http;

namespace LlmGateway.Identity;

/// <summary>
/// What never leaves the gateway toward a provider or a tool: the caller's gateway key (in any of the three
/// headers it may come in), the gateway's own run and request ids, and every X-Gateway-* instruction.
/// </summary>
internal static class CallerHeaders
{
    public static void Strip(IHeaderDictionary incoming, HttpRequestHeaders outgoing)
    {
        outgoing.Authorization = null;
        outgoing.Remove(GatewayHeaders.ApiKey);
        outgoing.Remove(GatewayHeaders.XApiKey);
        outgoing.Remove(GatewayHeaders.RunId);
        outgoing.Remove(GatewayHeaders.RequestId);

        // Found on Kestrel's header collection (a struct enumerator, no allocation), then removed outgoing.
        foreach (var header in incoming)
        {
            if (header.Key.StartsWith(GatewayHeaders.GatewayPrefix, StringComparison.OrdinalIgnoreCase))
            {
                outgoing.Remove(header.Key);
            }
        }
    }
}
