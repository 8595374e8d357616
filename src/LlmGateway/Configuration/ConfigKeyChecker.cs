using System.Collections.Concurrent;
using System.Reflection;
using Microsoft.Extensions.Configuration;

namespace LlmGateway.Configuration;

/// <summary>
/// Finds every key of a config section that no option reads, as key paths (<c>Gateway:Models:m1:CacheWrite: unknown
/// key</c>), before binding: the binder stops at the first one and names a C# type, not the path a person edits.
/// Options are records with settable properties; dictionaries take any key, lists take indexes.
/// </summary>
internal static class ConfigKeyChecker
{
    private static readonly ConcurrentDictionary<Type, Dictionary<string, Type>> Properties = new();

    public static List<string> FindUnknownKeys(IConfigurationSection section, Type optionsType)
    {
        var errors = new List<string>();
        Walk(section, optionsType, errors);
        return errors;
    }

    private static void Walk(IConfigurationSection section, Type type, List<string> errors)
    {
        type = Nullable.GetUnderlyingType(type) ?? type;
        if (IsScalar(type))
        {
            foreach (var child in section.GetChildren())
            {
                errors.Add($"{child.Path}: unknown key ({section.Key} takes a single value)");
            }

            return;
        }

        if (ElementType(type) is { } element)
        {
            var isList = !IsDictionary(type);
            foreach (var child in section.GetChildren())
            {
                if (isList && !int.TryParse(child.Key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _))
                {
                    errors.Add($"{child.Path}: unknown key ({section.Key} is a list)");
                    continue;
                }

                Walk(child, element, errors);
            }

            return;
        }

        var properties = Properties.GetOrAdd(type, static t => t
            .GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.SetMethod is { IsPublic: true })
            .ToDictionary(p => p.Name, p => p.PropertyType, StringComparer.OrdinalIgnoreCase));
        foreach (var child in section.GetChildren())
        {
            if (properties.TryGetValue(child.Key, out var propertyType))
            {
                Walk(child, propertyType, errors);
            }
            else
            {
                errors.Add($"{child.Path}: unknown key");
            }
        }
    }

    private static bool IsScalar(Type type) =>
        type.IsPrimitive || type.IsEnum || type == typeof(string) || type == typeof(decimal) || type == typeof(TimeSpan)
        || type == typeof(DateTimeOffset) || type == typeof(DateTime) || type == typeof(Uri);

    private static bool IsDictionary(Type type) =>
        type.IsGenericType && type.GetGenericTypeDefinition() is var definition
        && (definition == typeof(Dictionary<,>) || definition == typeof(IDictionary<,>) || definition == typeof(IReadOnlyDictionary<,>));

    /// <summary>The value type of a dictionary or the element type of a list or array; null for other types.</summary>
    private static Type? ElementType(Type type)
    {
        if (type.IsArray)
        {
            return type.GetElementType();
        }

        if (!type.IsGenericType)
        {
            return null;
        }

        var definition = type.GetGenericTypeDefinition();
        var arguments = type.GetGenericArguments();
        if (definition == typeof(Dictionary<,>) || definition == typeof(IDictionary<,>) || definition == typeof(IReadOnlyDictionary<,>))
        {
            return arguments[1];
        }

        return definition == typeof(List<>) || definition == typeof(IList<>) || definition == typeof(IReadOnlyList<>) || definition == typeof(IEnumerable<>)
            ? arguments[0]
            : null;
    }
}
