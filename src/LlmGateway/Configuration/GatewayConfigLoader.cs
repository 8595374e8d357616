using System.Security.Cryptography;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Configuration;

/// <summary>Reads, binds and validates a config file; never touches the active config.</summary>
internal static class GatewayConfigLoader
{
    /// <summary>Builds a config from the file's bytes, with environment variables layered over it.</summary>
    public static GatewayConfig Load(byte[] fileBytes, IConfiguration? overrides = null)
    {
        var version = Convert.ToHexStringLower(SHA256.HashData(fileBytes), 0, 6);
        IConfigurationRoot configuration;
        try
        {
            var builder = new ConfigurationBuilder().AddJsonStream(new MemoryStream(fileBytes, writable: false));
            if (overrides is not null)
            {
                builder.AddConfiguration(overrides);
            }
            else
            {
                builder.AddEnvironmentVariables();
            }

            configuration = builder.Build();
        }
        catch (Exception ex) when (ex is FormatException or InvalidDataException or System.Text.Json.JsonException)
        {
            throw new GatewayConfigException([$"the file is not valid JSON: {Describe(ex)}"]);
        }

        var section = configuration.GetSection(GatewayOptions.SectionName);
        var unknown = ConfigKeyChecker.FindUnknownKeys(section, typeof(GatewayOptions));
        if (unknown.Count > 0)
        {
            throw new GatewayConfigException(unknown);
        }

        GatewayOptions? options;
        try
        {
            options = section.Get<GatewayOptions>(o => o.ErrorOnUnknownConfiguration = true);
        }
        catch (InvalidOperationException ex)
        {
            throw new GatewayConfigException([DescribeBindError(ex)]);
        }

        if (options is null)
        {
            throw new GatewayConfigException([$"{GatewayOptions.SectionName}: the section is missing"]);
        }

        var errors = GatewayOptionsValidator.Validate(options);
        if (errors.Count > 0)
        {
            throw new GatewayConfigException(errors);
        }

        return new GatewayConfig(options, version);
    }

    /// <summary>
    /// The binder's message as "key path: reason": it says "Failed to convert configuration value '1x' at
    /// 'Gateway:Models:m1:InputUsdPerMTok' to type 'System.Decimal'", naming a .NET type a person does not edit.
    /// </summary>
    private static string DescribeBindError(InvalidOperationException ex)
    {
        var match = System.Text.RegularExpressions.Regex.Match(Describe(ex), "value '(?<value>.*)' at '(?<path>[^']+)' to type '(?<type>[^']+)'");
        if (!match.Success)
        {
            return Describe(ex);
        }

        var type = match.Groups["type"].Value;
        var expected = type switch
        {
            "System.Decimal" or "System.Double" => "a number",
            "System.Int32" or "System.Int64" => "a whole number",
            "System.Boolean" => "true or false",
            "System.TimeSpan" => "a duration \"hh:mm:ss\"",
            _ when type.StartsWith("LlmGateway.", StringComparison.Ordinal) => "one of the documented values",
            _ => "a value of another kind",
        };
        return $"{match.Groups["path"].Value}: '{match.Groups["value"].Value}' is not {expected}";
    }

    private static string Describe(Exception ex)
    {
        var message = ex.Message;
        for (var inner = ex.InnerException; inner is not null; inner = inner.InnerException)
        {
            message += " " + inner.Message;
        }

        return message;
    }
}

/// <summary>A config that failed to load, with every problem found.</summary>
internal sealed class GatewayConfigException(IReadOnlyList<string> errors)
    : Exception("Invalid gateway config: " + string.Join("; ", errors))
{
    public IReadOnlyList<string> Errors { get; } = errors;
}
