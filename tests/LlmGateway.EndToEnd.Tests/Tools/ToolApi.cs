using WireMock;
using WireMock.RequestBuilders;
using WireMock.ResponseBuilders;
using WireMock.Server;
using WireMock.Settings;
using WireMock.Types;
using WireMock.Util;

namespace LlmGateway.EndToEnd.Tests.Tools;

/// <summary>
/// The tool APIs behind the gateway, served by WireMock.Net on 127.0.0.1 (a free port). Unless a test maps a path
/// otherwise, every request is answered 200 with a JSON body and an <c>X-Tool-Call</c> header, each carrying a fresh
/// id, so a replayed response is told from a new one. What arrived is read from WireMock's request log.
/// </summary>
internal static class ToolApi
{
    public const string CallHeader = "X-Tool-Call";

    public static async Task<WireMockServer> StartAsync()
    {
        var server = WireMockServer.Start(new WireMockServerSettings { Urls = ["http://127.0.0.1:0"] });
        server.Given(Request.Create().WithPath("/*").UsingAnyMethod()).AtPriority(int.MaxValue).RespondWith(Answer());

        // The first answer in a process loads and compiles WireMock's request pipeline: 3 to 5 s of CPU measured on a
        // busy 2-core machine, paid here rather than while a gateway with tool and store timeouts of its own is calling.
        using (var client = new HttpClient())
        using (var warmUp = await client.GetAsync(server.Url + "/warm-up"))
        {
            warmUp.EnsureSuccessStatusCode();
        }

        server.ResetLogEntries();
        return server;
    }

    /// <summary>200, with a fresh call id in the JSON body and in <see cref="CallHeader"/>.</summary>
    /// <remarks>
    /// A callback rather than WireMock's response templating: a templated answer builds a new Handlebars context on
    /// every request, tens to hundreds of milliseconds of CPU each on a busy machine, enough to push the gateway's own
    /// store calls past their timeouts.
    /// </remarks>
    public static IResponseBuilder Answer() => Response.Create().WithCallback(request =>
    {
        var call = Guid.NewGuid().ToString();
        return new ResponseMessage
        {
            StatusCode = 200,
            Headers = new Dictionary<string, WireMockList<string>> { ["Content-Type"] = "application/json", [CallHeader] = call },
            BodyData = new BodyData { BodyAsString = $$"""{"call":"{{call}}","method":"{{request.Method}}"}""", DetectedBodyType = BodyType.String },
        };
    });

    /// <summary>Every request the tool answered, in the order it answered them.</summary>
    public static IReadOnlyList<ToolRequest> Requests(this WireMockServer server) =>
        server.LogEntries.Select(e => ToolRequest.From(e.RequestMessage)).ToArray();

    public static int CountFor(this WireMockServer server, string pathPrefix) =>
        server.Requests().Count(r => r.Path.StartsWith(pathPrefix, StringComparison.Ordinal));
}

/// <summary>One request as a tool received it: path with query, headers (names compare without case), body.</summary>
internal sealed record ToolRequest(string Method, string Path, IReadOnlyDictionary<string, string> Headers, string Body)
{
    internal static ToolRequest From(IRequestMessage message) => new(
        message.Method,
        message.Path + message.RawQuery,
        (message.Headers ?? new Dictionary<string, WireMockList<string>>())
            .ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
        message.Body ?? "");
}
