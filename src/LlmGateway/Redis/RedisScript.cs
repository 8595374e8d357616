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
    }

    public string Name { get; }

    public string Source { get; }

    /// <summary>The raw 20-byte SHA-1 Redis files the script under.</summary>
    public byte[] Hash { get; }
}
