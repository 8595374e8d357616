using System.Security.Cryptography;
using System.Text;

namespace LlmGateway.Redis;

/// <summary>A Lua script and its SHA-1, computed once: calls use EVALSHA and fall back to EVAL after a NOSCRIPT.</summary>
internal sealed class RedisScript
{
    public RedisScript(string name, string source)
    {
        Name = name;
        Source = source;
        Hash = SHA1.HashData(Encoding.UTF8.GetBytes(source));
        HexHash = Convert.ToHexStringLower(Hash);
    }

    public string Name { get; }

    public string Source { get; }

    /// <summary>The raw 20-byte SHA-1 Redis files the script under.</summary>
    public byte[] Hash { get; }

    /// <summary>The SHA-1 as EVALSHA takes it in a command sent to one server (<see cref="RedisConnection"/> with WaitForReplicas).</summary>
    public string HexHash { get; }
}
