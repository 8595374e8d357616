namespace LlmGateway.Configuration;

/// <summary>Checks Gateway:Approvals, the approval settings of tool rules and the tools' RunCache; every error names its key path.</summary>
internal static class ApprovalOptionsValidator
{
    /// <summary>The name the admin key (Gateway:AdminKey) decides approvals under.</summary>
    public const string AdminApprover = "admin";

    public static void Check(List<string> errors, GatewayOptions options)
    {
        const string path = GatewayOptions.SectionName + ":Approvals";
        var approvals = options.Approvals;
        if (approvals.Wait < TimeSpan.Zero || approvals.Wait > TimeSpan.FromMinutes(10))
        {
            errors.Add($"{path}:Wait: must be 00:00:00 to 00:10:00 (a held call waits this long for a decision)");
        }

        CheckPositive(errors, $"{path}:PendingTtl", approvals.PendingTtl);
        CheckPositive(errors, $"{path}:ApprovalTtl", approvals.ApprovalTtl);
        CheckPositive(errors, $"{path}:WebhookTimeout", approvals.WebhookTimeout);
        if (approvals.PreviewBytes is < 0 or > 65536)
        {
            errors.Add($"{path}:PreviewBytes: must be 0 to 65536");
        }

        if (approvals.WebhookAttempts is < 1 or > 10)
        {
            errors.Add($"{path}:WebhookAttempts: must be 1 to 10");
        }

        if (!string.IsNullOrEmpty(approvals.WebhookUrl)
            && (!Uri.TryCreate(approvals.WebhookUrl, UriKind.Absolute, out var webhook) || (webhook.Scheme != Uri.UriSchemeHttp && webhook.Scheme != Uri.UriSchemeHttps)))
        {
            errors.Add($"{path}:WebhookUrl: '{approvals.WebhookUrl}' is not an absolute http(s) URL");
        }

        var names = new HashSet<string>(StringComparer.Ordinal) { AdminApprover };
        var hashes = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, approver) in approvals.Approvers)
        {
            var at = $"{path}:Approvers:{name}";
            if (name == AdminApprover || !Identity.CallerAuthenticator.IsValidId(name))
            {
                errors.Add($"{at}: the name must be 1 to 128 letters, digits or . _ : - and not '{AdminApprover}' (the admin key's name)");
            }

            names.Add(name);
            if (string.IsNullOrEmpty(approver.Key) == string.IsNullOrEmpty(approver.KeySha256))
            {
                errors.Add($"{at}: exactly one of Key or KeySha256 is required");
            }
            else if (approver.KeySha256 is { Length: > 0 } hash && (hash.Length != 64 || !hash.All(char.IsAsciiHexDigit)))
            {
                errors.Add($"{at}:KeySha256: must be 64 hex digits (the SHA-256 of the key)");
            }
            else if (!hashes.Add(approver.KeySha256 ?? KeyHashing.Sha256Hex(approver.Key!)))
            {
                errors.Add($"{at}: the same key is configured for two approvers");
            }

            for (var g = 0; g < approver.Groups.Count; g++)
            {
                if (!Identity.CallerAuthenticator.IsValidId(approver.Groups[g]))
                {
                    errors.Add($"{at}:Groups:{g}: '{approver.Groups[g]}' is not a group name (letters, digits, . _ : -)");
                }
            }
        }

        foreach (var approver in approvals.Approvers.Values)
        {
            names.UnionWith(approver.Groups);
        }

        for (var k = 0; k < options.Keys.Count; k++)
        {
            foreach (var (tool, rules) in options.Keys[k].Tools)
            {
                for (var r = 0; r < rules.Count; r++)
                {
                    CheckRule(errors, $"{GatewayOptions.SectionName}:Keys:{k}:Tools:{tool}:{r}", rules[r], names);
                }
            }
        }

        foreach (var (name, tool) in options.Tools)
        {
            if (tool.RunCache is { } cache)
            {
                CheckRunCache(errors, $"{GatewayOptions.SectionName}:Tools:{name}:RunCache", cache);
            }
        }
    }

    private static void CheckRule(List<string> errors, string path, ToolRuleOptions rule, HashSet<string> approvers)
    {
        if (!rule.Approval && (rule.Approvers.Count > 0 || rule.ApprovalTtl is not null))
        {
            errors.Add($"{path}: Approvers and ApprovalTtl need \"Approval\": true");
        }

        for (var i = 0; i < rule.Approvers.Count; i++)
        {
            if (!approvers.Contains(rule.Approvers[i]))
            {
                errors.Add($"{path}:Approvers:{i}: '{rule.Approvers[i]}' is neither '{AdminApprover}' nor an approver or group of Gateway:Approvals:Approvers");
            }
        }

        if (rule.ApprovalTtl is { } ttl)
        {
            CheckPositive(errors, $"{path}:ApprovalTtl", ttl);
        }
    }

    private static void CheckRunCache(List<string> errors, string path, ToolRunCacheOptions cache)
    {
        CheckPositive(errors, $"{path}:Ttl", cache.Ttl);
        if (cache.MaxRunBytes <= 0 || cache.MaxEntryBytes <= 0 || cache.MaxEntryBytes > cache.MaxRunBytes)
        {
            errors.Add($"{path}: MaxRunBytes and MaxEntryBytes must be positive, MaxEntryBytes at most MaxRunBytes");
        }

        for (var i = 0; i < cache.Methods.Count; i++)
        {
            if (!string.Equals(cache.Methods[i], "GET", StringComparison.OrdinalIgnoreCase) && !string.Equals(cache.Methods[i], "HEAD", StringComparison.OrdinalIgnoreCase))
            {
                errors.Add($"{path}:Methods:{i}: '{cache.Methods[i]}' is not a read; only GET and HEAD answers may be kept");
            }
        }
    }

    private static void CheckPositive(List<string> errors, string path, TimeSpan value)
    {
        if (value <= TimeSpan.Zero)
        {
            errors.Add($"{path}: must be positive");
        }
    }
}
