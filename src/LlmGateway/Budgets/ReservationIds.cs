using System.Globalization;
using System.Security.Cryptography;

namespace LlmGateway.Budgets;

/// <summary>Reservation ids: a random per-store prefix (unique across replicas) and a sequence number.</summary>
internal static class ReservationIds
{
    public static string NewPrefix() => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)) + "-";

    public static string Format(string prefix, long sequence) =>
        string.Create(CultureInfo.InvariantCulture, $"{prefix}{sequence}");
}
