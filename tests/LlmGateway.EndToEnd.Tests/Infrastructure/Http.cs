using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace LlmGateway.EndToEnd.Tests.Infrastructure;

/// <summary>Raw HTTP helpers for what an SDK hides: exact bytes, headers, and cut connections.</summary>
public static class Http
{
    public static HttpRequestMessage Post(string path, string body, string? key = TestConfigs.Key, params (string Name, string Value)[] headers)
        => Post(path, Encoding.UTF8.GetBytes(body), key, headers);

    public static HttpRequestMessage Post(string path, byte[] body, string? key = TestConfigs.Key, params (string Name, string Value)[] headers)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (key is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        foreach (var (name, value) in headers)
        {
            request.Headers.TryAddWithoutValidation(name, value);
        }

        return request;
    }

    public static string Chat(string model = "mock-small", string content = "hello there", bool stream = false, string extra = "")
        => $$"""{"model":"{{model}}","messages":[{"role":"user","content":"{{content}}"}]{{(stream ? ",\"stream\":true" : "")}}{{extra}}}""";

    /// <summary>Parses an OpenAI-shaped error body and returns its error object.</summary>
    public static async Task<JsonElement> ErrorOf(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        using var document = JsonDocument.Parse(text);
        Assert.True(document.RootElement.TryGetProperty("error", out var error), $"not an OpenAI error body: {text}");
        foreach (var field in new[] { "message", "type", "param", "code" })
        {
            Assert.True(error.TryGetProperty(field, out _), $"error without '{field}': {text}");
        }

        return error.Clone();
    }

    public static async Task AssertErrorAsync(HttpResponseMessage response, int status, string code, bool shouldRetry)
    {
        Assert.Equal(status, (int)response.StatusCode);
        var error = await ErrorOf(response);
        Assert.Equal(code, error.GetProperty("code").GetString());
        Assert.False(string.IsNullOrWhiteSpace(error.GetProperty("message").GetString()));
        Assert.Equal(shouldRetry ? "true" : "false", response.Headers.GetValues("x-should-retry").Single());
        Assert.True(response.Headers.Contains("X-Request-Id"));
    }

    /// <summary>The data payloads of an SSE body, in order.</summary>
    public static List<string> DataEvents(string sse)
    {
        var events = new List<string>();
        foreach (var block in sse.Split("\n\n", StringSplitOptions.RemoveEmptyEntries))
        {
            foreach (var line in block.Split('\n'))
            {
                if (line.StartsWith("data: ", StringComparison.Ordinal))
                {
                    events.Add(line[6..]);
                }
            }
        }

        return events;
    }

    /// <summary>Waits until a condition holds, for effects that happen after a response completes.</summary>
    public static async Task<T> EventuallyAsync<T>(Func<T?> probe, string what, int timeoutMs = 5000)
        where T : class
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (true)
        {
            if (probe() is { } value)
            {
                return value;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting for {what}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Waits until an asynchronous probe returns a value.</summary>
    public static async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe, string what, int timeoutMs = 5000)
        where T : struct
    {
        var deadline = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (true)
        {
            if (await probe() is { } value)
            {
                return value;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"Timed out waiting for {what}");
            }

            await Task.Delay(20);
        }
    }
}
