using System.Net.Http.Headers;
using LlmGateway.Forwarding;

namespace LlmGateway.Identity;

/// <summary>
/// What never leaves the gateway toward a provider or a tool: the caller's gateway key (in any of the three
/// headers it may come in), the gateway's own run and request ids, and every X-Gateway-* instruction.
/// </summary>
internal static class CallerHeaders
{
    public static void Strip(HttpRequestHeaders outgoing)
    {
        outgoing.Authorization = null;
        outgoing.Remove(GatewayHeaders.ApiKey);
        outgoing.Remove(GatewayHeaders.XApiKey);
        outgoing.Remove(GatewayHeaders.RunId);
        outgoing.Remove(GatewayHeaders.RequestId);

        // Looked for among the outgoing headers, which YARP copied from the caller's: their non-validated view has a
        // struct enumerator, while enumerating the IHeaderDictionary allocates one per request. Removed afterwards,
        // as a collection cannot change under its enumerator; callers rarely send any.
        List<string>? found = null;
        foreach (var header in outgoing.NonValidated)
        {
            if (header.Key.StartsWith(GatewayHeaders.GatewayPrefix, StringComparison.OrdinalIgnoreCase))
            {
                (found ??= []).Add(header.Key);
            }
        }

        if (found is not null)
        {
            foreach (var name in found)
            {
                outgoing.Remove(name);
            }
        }
    }
}
