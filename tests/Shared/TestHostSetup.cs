using System.Runtime.CompilerServices;

namespace LlmGateway.Tests.Shared;

/// <summary>Settings of each test process itself (unit and end-to-end), applied before any test runs.</summary>
internal static class TestHostSetup
{
    /// <summary>
    /// The thread pool starts with one worker per core (two on CI machines) and adds more slowly (~1–2 a second)
    /// when they are all busy. Some tests block a worker on purpose — a redis-server being killed and restarted, a
    /// Redis kept busy by a long script — while other classes run in parallel; with two workers, every await elsewhere
    /// then waits for the pool to grow, and calls bounded by 2 s time out (or, for a gateway hosted in the end-to-end
    /// test process, by its 200 ms store timeout). The gateway itself never blocks a worker.
    /// </summary>
    [ModuleInitializer]
    internal static void Initialize()
    {
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 32), Math.Max(io, 32));
    }
}
