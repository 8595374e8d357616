namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>Requests against the "metered" model whose cost is known in advance.</summary>
public static class BudgetCalls
{
    /// <summary>A call that reserves and costs exactly <paramref name="tokens"/> × $0.001.</summary>
    public static HttpRequestMessage Metered(string key, int tokens = 10, string? runId = null, string content = "metered call", bool stream = false)
    {
        var headers = new List<(string, string)> { ("X-Mock-Usage-Completion", tokens.ToString(System.Globalization.CultureInfo.InvariantCulture)) };
        if (runId is not null)
        {
            headers.Add(("X-Run-Id", runId));
        }

        return Http.Post("/v1/chat/completions", Http.Chat(model: "metered", content: content, stream: stream, extra: $",\"max_tokens\":{tokens}"), key, [.. headers]);
    }

    public static HttpRequestMessage Admin(HttpMethod method, string path)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new("Bearer", TestConfigs.AdminKey);
        return request;
    }
}
