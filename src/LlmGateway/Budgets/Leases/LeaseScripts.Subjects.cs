using LlmGateway.Redis;

namespace LlmGateway.Budgets.Leases;

/// <summary>
/// The lease scripts of a user's (or gateway key's) own hash: rate-window blocks and in-flight blocks. Each touches one
/// hash slot (the subject's tag) and keeps the per-call layout (<see cref="RedisAdmissionScripts"/>), so per-call
/// admissions on any replica see every block.
/// </summary>
/// <remarks>
/// A rate block is n calls (and n × the asking call's tokens) counted in the window counter <c>w{s}</c> of its grant
/// second s, exactly as n per-call admissions in s would be: no 60 s span ever holds more than the limit, whoever
/// admitted. The block admits calls only within s; what it did not use is taken out of s again (like released calls),
/// never moved to a later second. An in-flight block is k slots counted in the user's in-flight counter and its expiry
/// second's <c>x{s}</c> field, like k per-call reservations; they go back when the block closes and its calls finish.
/// Both kinds bump the subject's lease version <c>lv</c> (and publish it) when their limits changed.
/// </remarks>
internal static partial class LeaseScripts
{
    // The subject's limits of one kind, compared with the last grant's: changed limits close every replica's blocks.
    private const string Limits = """
        local function bumpIfChanged(h, stored, limits, version)
          if stored and stored ~= limits then
            version = redis.call('HINCRBY', h, 'lv', 1)
            redis.call('PUBLISH', ARGV[3], h .. ' ' .. version)
          end
          return version
        end

        """;

    // KEYS: 1 the subject's hash (a user's, or a gateway key's window). ARGV: 1 packed now, tokens of the asking call,
    // want calls, rpm, tpm, fraction; 2 the grant second's window field ('w' .. second); 3 the lease channel.
    // Returns { calls granted (0: not one call fits), version, the window's calls, tokens and oldest second before }.
    // n = min(want, fraction of the calls left, fraction of the tokens left / the call's tokens), at least one while one
    // fits: blocks shrink to one call near the limit, where the store goes per call for the exact refusal.
    public static readonly RedisScript GrantRate = new("lease-grant-rate", RedisAdmissionScripts.Prelude + Limits + """
        local nowMs, nt, want, rpm, tpm, fraction = sunpack('<dddddd', ARGV[1])
        setNow(nowMs)
        local v = redis.call('HMGET', KEYS[1], 'lv', 'u', ARGV[2], 'lr')
        local inFlight, xo, xm, n, k, o = subject(v[2])
        local s = window(KEYS[1], n, k, o)
        local limits = spack('<dd', rpm, tpm)
        local version = bumpIfChanged(KEYS[1], v[4], limits, tonumber(v[1]) or 0)
        local g = want
        if rpm > 0 then
          local room = rpm - s.n
          if room < 1 then g = 0 else g = math.min(g, math.max(1, math.floor(room * fraction))) end
        end
        if g > 0 and tpm > 0 and nt > 0 then
          local room = tpm - s.k
          if room < nt then g = 0 else g = math.min(g, math.max(1, math.floor(room * fraction / nt))) end
        end
        local reply = { g, version, s.n, s.k, s.o }
        local f = {}
        if v[4] ~= limits then add(f, 'lr', limits) end
        if g > 0 then
          local c, t = 0, 0
          if v[3] then c, t = sunpack('<dd', v[3]) end
          s.n = s.n + g; s.k = s.k + g * nt
          if s.o == NONE then s.o = nowSec end
          add(f, ARGV[2], spack('<dd', c + g, t + g * nt))
          if not v[2] then add(f, 'enc', string.rep('-', 65)) end
          s.dirty = true
        end
        if s.dirty then add(f, 'u', spack('<dddddd', inFlight, xo, xm, s.n, s.k, s.o)) end
        if #f > 0 then redis.call('HSET', KEYS[1], unpack(f)) end
        return reply
        """);

    // KEYS: 1 the subject's hash. ARGV: 1 packed second, calls and tokens to add (negative: taken out); 2 the second's
    // window field. Applies a closed rate block's correction while its second is still in the window (a settled call's
    // actual tokens, its unused and released calls taken out), as a per-call settle or release does.
    public static readonly RedisScript ReturnRate = new("lease-return-rate", """
        local second, dc, dt = struct.unpack('<ddd', ARGV[1])
        local v = redis.call('HMGET', KEYS[1], 'u', ARGV[2])
        if not v[1] or not v[2] then return 0 end
        local inFlight, xo, xm, n, k, o = struct.unpack('<dddddd', v[1])
        if o == -1 or o > second then return 0 end
        local c, t = struct.unpack('<dd', v[2])
        c = c + dc; t = t + dt; n = n + dc; k = k + dt
        if n <= 0 then n = 0; o = -1 end
        if c <= 0 then
          redis.call('HDEL', KEYS[1], ARGV[2])
          redis.call('HSET', KEYS[1], 'u', struct.pack('<dddddd', inFlight, xo, xm, n, k, o))
        else
          redis.call('HSET', KEYS[1], ARGV[2], struct.pack('<dd', c, t), 'u', struct.pack('<dddddd', inFlight, xo, xm, n, k, o))
        end
        return 1
        """);

    // KEYS: 1 the user's hash, 2 its zset of pending seconds. ARGV: 1 packed now, expiry second, want slots, cap,
    // fraction; 2 the expiry second's field ('x' .. second); 3 the lease channel.
    // Returns { slots granted (0: the cap is reached), version }.
    public static readonly RedisScript GrantInFlight = new("lease-grant-in-flight", RedisAdmissionScripts.Prelude + Limits + """
        local nowMs, ei, want, cap, fraction = sunpack('<ddddd', ARGV[1])
        setNow(nowMs)
        local v = redis.call('HMGET', KEYS[1], 'lv', 'u', ARGV[2], 'lf')
        local inFlight, xo, xm, n, k, o = subject(v[2])
        local dirty = false
        if xo ~= NONE and xo <= nowSec then
          -- Slots whose second passed are given back, as the per-call scripts do.
          local _, _, c, nx = expire(KEYS[1], KEYS[2], false)
          inFlight = inFlight - c
          xo = nx
          dirty = true
        end
        local limits = spack('<d', cap)
        local version = bumpIfChanged(KEYS[1], v[4], limits, tonumber(v[1]) or 0)
        local room = cap - inFlight
        local g = 0
        if room >= 1 then g = math.min(want, math.max(1, math.floor(room * fraction))) end
        local f = {}
        if v[4] ~= limits then add(f, 'lf', limits) end
        if g > 0 then
          local list = not v[3] and xm ~= ei
          if xo == NONE or ei < xo then xo = ei end
          if list then
            xm = ei
            redis.call('ZADD', KEYS[2], ei, ei)
          end
          add(f, ARGV[2], (tonumber(v[3]) or 0) + g)
          if not v[2] then add(f, 'enc', string.rep('-', 65)) end
          inFlight = inFlight + g
          dirty = true
        end
        if dirty then add(f, 'u', spack('<dddddd', inFlight, xo, xm, n, k, o)) end
        if #f > 0 then redis.call('HSET', KEYS[1], unpack(f)) end
        return { g, version }
        """);

    // KEYS: 1 the user's hash. ARGV: 1 slots given back; 2 their expiry second's field. Nothing if that second expired
    // (Redis gave the slots back then).
    public static readonly RedisScript ReturnInFlight = new("lease-return-in-flight", """
        local r = tonumber(ARGV[1])
        local v = redis.call('HMGET', KEYS[1], 'u', ARGV[2])
        if not v[1] or not v[2] then return 0 end
        local inFlight, xo, xm, n, k, o = struct.unpack('<dddddd', v[1])
        local x = tonumber(v[2]) - r
        local u = struct.pack('<dddddd', inFlight - r, xo, xm, n, k, o)
        if x <= 0 then
          redis.call('HDEL', KEYS[1], ARGV[2])
          redis.call('HSET', KEYS[1], 'u', u)
        else
          redis.call('HSET', KEYS[1], ARGV[2], x, 'u', u)
        end
        return 1
        """);
}
