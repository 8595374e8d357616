using System.Text.Json;

namespace LlmGateway.Drift;

/// <summary>
/// What an upstream answer says about the model behind it: the model and system_fingerprint it reports, why it
/// stopped, and which tools it asked for. Filled from a whole JSON answer or from a stream's events one by one.
/// </summary>
internal sealed class AnswerSignals
{
    /// <summary>The "model" the answer reports (not the configured name).</summary>
    public string? Model { get; private set; }

    /// <summary>OpenAI's system_fingerprint, when the answer carries one.</summary>
    public string? Fingerprint { get; private set; }

    /// <summary>OpenAI's finish_reason, Anthropic's stop_reason, or a Responses answer's status (its incomplete reason).</summary>
    public string? FinishReason { get; private set; }

    /// <summary>The names of the tools the model asked to call, in order; null when none.</summary>
    public List<string>? ToolCalls { get; private set; }

    /// <summary>"model" or "model/fingerprint"; null when the answer named no model. Built once, for the metric and the log.</summary>
    public string? Version => Model is null ? null : _version ??= Fingerprint is null ? Model : Model + "/" + Fingerprint;

    private string? _version;

    public void Clear()
    {
        Model = null;
        Fingerprint = null;
        _version = null;
        FinishReason = null;
        ToolCalls = null;
    }

    /// <summary>Reads one JSON answer or one stream event's data; anything not understood is ignored.</summary>
    public void Read(ReadOnlySpan<byte> json)
    {
        if (Model is not null && !MayCarrySignal(json))
        {
            // Most stream events are text deltas: once the model is known, only a name, a reason or a status is news.
            return;
        }

        var reader = new Utf8JsonReader(json);
        try
        {
            using var document = JsonDocument.ParseValue(ref reader);
            if (document.RootElement.ValueKind == JsonValueKind.Object)
            {
                ReadMessage(document.RootElement, top: true);
            }
        }
        catch (JsonException)
        {
            // The usage reader has already judged the payload; a signal it lacks is simply not read.
        }
    }

    /// <summary>Inside JSON strings quotes are escaped, so these unescaped sequences only occur as member names.</summary>
    private static bool MayCarrySignal(ReadOnlySpan<byte> json) =>
        json.IndexOf("\"name\""u8) >= 0 || json.IndexOf("_reason\":\""u8) >= 0 || json.IndexOf("_reason\": \""u8) >= 0 || json.IndexOf("\"status\""u8) >= 0;

    /// <summary>
    /// A whole answer or an event at the top, or the message / response an event wraps (Anthropic's message_start,
    /// the Responses stream's response.* events).
    /// </summary>
    private void ReadMessage(JsonElement message, bool top)
    {
        foreach (var property in message.EnumerateObject())
        {
            var value = property.Value;
            switch (property.Name)
            {
                case "model" when value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } model:
                    if (model != Model)
                    {
                        Model = model;
                        _version = null;
                    }

                    break;
                case "system_fingerprint" when value.ValueKind == JsonValueKind.String && value.GetString() is { Length: > 0 } fingerprint:
                    if (fingerprint != Fingerprint)
                    {
                        Fingerprint = fingerprint;
                        _version = null;
                    }

                    break;
                case "stop_reason" when value.ValueKind == JsonValueKind.String:
                    FinishReason = value.GetString();
                    break;
                case "status" when value.ValueKind == JsonValueKind.String && message.TryGetProperty("output", out _):
                    ReadResponsesStatus(value.GetString(), message);
                    break;
                case "delta" when top && value.ValueKind == JsonValueKind.Object:
                    // Anthropic's message_delta: {"delta":{"stop_reason":"end_turn",...}}.
                    if (value.TryGetProperty("stop_reason", out var stop) && stop.ValueKind == JsonValueKind.String)
                    {
                        FinishReason = stop.GetString();
                    }

                    break;
                case "choices" when value.ValueKind == JsonValueKind.Array:
                    ReadChoices(value);
                    break;
                case "content" or "output" when value.ValueKind == JsonValueKind.Array:
                    // Anthropic's content blocks (tool_use) and a Responses answer's output items (function_call).
                    foreach (var block in value.EnumerateArray())
                    {
                        ReadToolBlock(block);
                    }

                    break;
                case "content_block" when top:
                    // Anthropic's content_block_start.
                    ReadToolBlock(value);
                    break;
                case "message" or "response" when top && value.ValueKind == JsonValueKind.Object:
                    ReadMessage(value, top: false);
                    break;
            }
        }
    }

    private void ReadResponsesStatus(string? status, JsonElement response)
    {
        if (status is "completed" or "failed")
        {
            FinishReason = status;
        }
        else if (status == "incomplete")
        {
            FinishReason = response.TryGetProperty("incomplete_details", out var details) && details.ValueKind == JsonValueKind.Object
                && details.TryGetProperty("reason", out var reason) && reason.ValueKind == JsonValueKind.String
                ? reason.GetString()
                : status;
        }
    }

    private void ReadChoices(JsonElement choices)
    {
        foreach (var choice in choices.EnumerateArray())
        {
            if (choice.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            if (choice.TryGetProperty("finish_reason", out var finish) && finish.ValueKind == JsonValueKind.String)
            {
                FinishReason = finish.GetString();
            }

            // A whole answer's "message", a stream chunk's "delta" (where a call's name comes with its first chunk only).
            if ((choice.TryGetProperty("message", out var message) || choice.TryGetProperty("delta", out message)) && message.ValueKind == JsonValueKind.Object)
            {
                if (message.TryGetProperty("tool_calls", out var calls) && calls.ValueKind == JsonValueKind.Array)
                {
                    foreach (var call in calls.EnumerateArray())
                    {
                        if (call.ValueKind == JsonValueKind.Object && call.TryGetProperty("function", out var function))
                        {
                            AddName(function);
                        }
                    }
                }

                if (message.TryGetProperty("function_call", out var legacy))
                {
                    AddName(legacy);
                }
            }
        }
    }

    private void ReadToolBlock(JsonElement block)
    {
        if (block.ValueKind == JsonValueKind.Object && block.TryGetProperty("type", out var type) && type.ValueKind == JsonValueKind.String
            && (type.ValueEquals("tool_use"u8) || type.ValueEquals("function_call"u8)))
        {
            AddName(block);
        }
    }

    private void AddName(JsonElement holder)
    {
        if (holder.ValueKind == JsonValueKind.Object && holder.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String
            && name.GetString() is { Length: > 0 } value)
        {
            (ToolCalls ??= []).Add(value);
        }
    }
}
