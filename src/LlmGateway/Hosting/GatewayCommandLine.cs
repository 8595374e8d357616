using LlmGateway.Configuration;

namespace Microsoft.AspNetCore.Builder;

/// <summary>
/// The gateway's command line around the host: <c>--check-config [PATH]</c> validates a config file and exits, and a
/// config problem at start-up ends the process with one line per problem (the key path and the reason, as a hot reload
/// logs them) and exit code 2, never a stack trace.
/// </summary>
public static class GatewayCommandLine
{
    /// <summary>Exit code of a config the gateway cannot start with (or that <c>--check-config</c> refused).</summary>
    public const int ConfigErrorExitCode = 2;

    /// <summary>Runs <paramref name="host"/> (build and run the web application), or checks the config when asked to.</summary>
    public static int Run(string[] args, Action<string[]> host)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(host);
        var check = Array.IndexOf(args, "--check-config");
        if (check >= 0)
        {
            var path = check + 1 < args.Length && !args[check + 1].StartsWith("--", StringComparison.Ordinal)
                ? args[check + 1]
                : GatewayApplicationExtensions.ResolveConfigPath(OptionValue(args, "--config"));
            return CheckConfig(path, Console.Out, Console.Error);
        }

        try
        {
            host(args);
            return 0;
        }
        catch (Exception exception) when (FindConfigError(exception) is { } problems)
        {
            WriteProblems(problems, Console.Error);
            return ConfigErrorExitCode;
        }
    }

    /// <summary>Validates the file at <paramref name="path"/> with the environment layered over it, as start-up would.</summary>
    public static int CheckConfig(string path, TextWriter output, TextWriter errors)
    {
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(errors);
        try
        {
            var config = GatewayConfigLoader.Load(File.ReadAllBytes(path));
            output.WriteLine($"{path}: valid (version {config.Version})");
            return 0;
        }
        catch (Exception exception) when (FindConfigError(exception) is { } problems)
        {
            errors.WriteLine($"{path}: invalid");
            WriteProblems(problems, errors);
            return ConfigErrorExitCode;
        }
    }

    private static void WriteProblems(IReadOnlyList<string> problems, TextWriter errors)
    {
        foreach (var problem in problems)
        {
            errors.WriteLine($"config error: {problem}");
        }
    }

    /// <summary>The problems of a config that cannot be used, wherever in the exception chain they are; null for other failures.</summary>
    private static IReadOnlyList<string>? FindConfigError(Exception exception) => exception switch
    {
        GatewayConfigException config => config.Errors,
        FileNotFoundException missing => [$"the config file {missing.FileName ?? "(unknown)"} does not exist (give one with --config PATH or LLMGATEWAY_CONFIG)"],
        DirectoryNotFoundException => ["the config file's folder does not exist (give the file with --config PATH or LLMGATEWAY_CONFIG)"],
        UnauthorizedAccessException denied => [$"the config file cannot be read: {denied.Message}"],
        AggregateException aggregate when aggregate.InnerExceptions.Count == 1 => FindConfigError(aggregate.InnerExceptions[0]),
        System.Reflection.TargetInvocationException { InnerException: { } inner } => FindConfigError(inner),
        InvalidOperationException { InnerException: { } inner } => FindConfigError(inner),
        _ => null,
    };

    private static string? OptionValue(string[] args, string name)
    {
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == name && i + 1 < args.Length)
            {
                return args[i + 1];
            }

            if (args[i].StartsWith(name + "=", StringComparison.Ordinal))
            {
                return args[i][(name.Length + 1)..];
            }
        }

        return null;
    }
}
