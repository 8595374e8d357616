namespace LlmGateway.Tests.Budgets;

/// <summary>
/// A suite that pauses or kills a real Redis's clients on every primary (CLIENT PAUSE, CLIENT KILL): its subclasses say
/// where Redis is (one redis-server, or the 3-master cluster), and every test ends with Redis unpaused and the stores it
/// made disposed.
/// </summary>
public abstract class RedisPausingTests : IDisposable
{
    private readonly List<IDisposable> _stores = [];

    protected abstract string ConnectionString { get; }

    /// <summary>Sends a command to every primary; returns their first reply lines.</summary>
    protected abstract string?[] OnEveryNode(string command);

    public void Dispose()
    {
        OnEveryNode("CLIENT UNPAUSE");
        foreach (var store in _stores)
        {
            store.Dispose();
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>A store the test made, disposed after it (once Redis is unpaused).</summary>
    protected T Track<T>(T store)
        where T : IDisposable
    {
        _stores.Add(store);
        return store;
    }
}
