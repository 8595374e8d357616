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

    /// <summary>
    /// Sends <paramref name="calls"/> concurrently against one user's budget and checks that it was never passed: every
    /// admitted call charged <paramref name="callCost"/>, every other refused as <paramref name="assertRefused"/> checks,
    /// and once settled the user's spend is exactly the admitted calls' cost and within <paramref name="budget"/>.
    /// </summary>
    /// <returns>How many calls were admitted (at least one).</returns>
    public static async Task<int> AssertBudgetNeverPassedAsync(HttpClient client, string user, IEnumerable<HttpRequestMessage> calls, decimal callCost, decimal budget, Func<HttpResponseMessage, Task> assertRefused)
    {
        var responses = await Task.WhenAll(calls.Select(client.SendAsync));
        var admitted = responses.Where(r => r.StatusCode == System.Net.HttpStatusCode.OK).ToArray();
        Assert.NotEmpty(admitted);
        foreach (var response in admitted)
        {
            Assert.Equal(callCost, decimal.Parse(response.Headers.GetValues("X-Gateway-Cost-Usd").Single(), System.Globalization.CultureInfo.InvariantCulture));
        }

        foreach (var refused in responses.Where(r => r.StatusCode != System.Net.HttpStatusCode.OK))
        {
            await assertRefused(refused);
        }

        var spent = (await SettledAsync(client, $"/admin/users/{user}")).GetProperty("spent_usd").GetDecimal();
        Assert.Equal(admitted.Length * callCost, spent);
        Assert.True(spent <= budget, $"spent ${spent} of a ${budget} budget ({admitted.Length} calls admitted)");
        return admitted.Length;
    }

    public static HttpRequestMessage Admin(HttpMethod method, string path)
    {
        var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new("Bearer", TestConfigs.AdminKey);
        return request;
    }
}
