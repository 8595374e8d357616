using Xunit.Abstractions;
using Xunit.Sdk;

namespace LlmGateway.Tests.Shared;

/// <summary>A fact that needs a real redis-server: skipped, saying why, where none is installed (fails under CI).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class RedisFactAttribute : FactAttribute
{
    public RedisFactAttribute()
    {
        if (RedisServer.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A theory that needs a real redis-server: skipped, saying why, where none is installed (fails under CI).</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class RedisTheoryAttribute : TheoryAttribute
{
    public RedisTheoryAttribute()
    {
        if (RedisServer.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>Marks a test class (e.g. the Redis subclass of a contract suite) whose every <see cref="StoreFactAttribute"/> needs redis-server.</summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class RequiresRedisServerAttribute : Attribute;

/// <summary>
/// A fact of a contract suite written once in an abstract class and run by each store's subclass. xunit 2 has no
/// dynamic skip, so the discoverer decides per subclass: skipped where the subclass is marked
/// <see cref="RequiresRedisServerAttribute"/> and redis-server is missing (outside CI), a plain fact otherwise.
/// </summary>
/// <remarks>The discoverer is looked up in the assembly named LlmGateway.Tests, the project that compiles tests/Shared for these suites.</remarks>
[AttributeUsage(AttributeTargets.Method)]
[XunitTestCaseDiscoverer("LlmGateway.Tests.Shared.StoreFactDiscoverer", "LlmGateway.Tests")]
public sealed class StoreFactAttribute : FactAttribute;

/// <summary>Discovers <see cref="StoreFactAttribute"/> tests; see there.</summary>
public sealed class StoreFactDiscoverer(IMessageSink diagnosticMessageSink) : FactDiscoverer(diagnosticMessageSink)
{
    private static readonly string RequiresRedis = typeof(RequiresRedisServerAttribute).AssemblyQualifiedName!;

    protected override IXunitTestCase CreateTestCase(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute)
    {
        if (RedisServer.SkipReason is { } reason)
        {
            foreach (var _ in testMethod.TestClass.Class.GetCustomAttributes(RequiresRedis))
            {
                return new XunitSkippedDataRowTestCase(
                    DiagnosticMessageSink,
                    discoveryOptions.MethodDisplayOrDefault(),
                    discoveryOptions.MethodDisplayOptionsOrDefault(),
                    testMethod,
                    reason);
            }
        }

        return base.CreateTestCase(discoveryOptions, testMethod, factAttribute);
    }
}
