using System.Buffers.Binary;

namespace LlmGateway.Identity;

/// <summary>A SHA-256 digest as a dictionary key, without allocating a string per lookup.</summary>
internal readonly struct Sha256Key : IEquatable<Sha256Key>
{
    private readonly ulong _a;
    private readonly ulong _b;
    private readonly ulong _c;
    private readonly ulong _d;

    public Sha256Key(ReadOnlySpan<byte> digest)
    {
        if (digest.Length != 32)
        {
            throw new ArgumentException("A SHA-256 digest is 32 bytes.", nameof(digest));
        }

        _a = BinaryPrimitives.ReadUInt64LittleEndian(digest);
        _b = BinaryPrimitives.ReadUInt64LittleEndian(digest[8..]);
        _c = BinaryPrimitives.ReadUInt64LittleEndian(digest[16..]);
        _d = BinaryPrimitives.ReadUInt64LittleEndian(digest[24..]);
    }

    // Compared without early exit: the digest of a wrong key reveals nothing, and this keeps the
    // comparison constant-time anyway.
    public bool Equals(Sha256Key other) => ((_a ^ other._a) | (_b ^ other._b) | (_c ^ other._c) | (_d ^ other._d)) == 0;

    public override bool Equals(object? obj) => obj is Sha256Key other && Equals(other);

    public override int GetHashCode() => (int)_a;
}
