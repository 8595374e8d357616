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

    /// <summary>
    /// The admin state at <paramref name="path"/> (<c>/admin/users/{id}</c> or <c>/admin/runs/{id}</c>) once nothing is
    /// reserved: a call is settled just after its answer reached the client, so spend read at once can miss the last
    /// calls. After 10 s the last state is returned as it is, for the caller's assertions to report.
    /// </summary>
    public static async Task<System.Text.Json.JsonElement> SettledAsync(HttpClient client, string path)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            using var response = await client.SendAsync(Admin(HttpMethod.Get, path));
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.IsSuccessStatusCode, text);
            var state = System.Text.Json.JsonDocument.Parse(text).RootElement.Clone();
            if (state.GetProperty("reserved_usd").GetDecimal() == 0 || DateTime.UtcNow > deadline)
            {
                return state;
            }

            await Task.Delay(20);
        }
    }

    public static HttpRequestMessage Admin(HttpMethod method, string path)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new("Bearer", TestConfigs.AdminKey);
        return request;
    }
}
