using LlmGateway.Redis;

namespace LlmGateway.Budgets.Leases;

/// <summary>
/// The lease scripts of <see cref="LeasedAdmissionStore"/>: each touches one budget scope, so one hash slot.
/// </summary>
/// <remarks>
/// A block lives in the per-call store's own layout (see <see cref="RedisAdmissionScripts"/>): it is held in the scope's
/// packed <c>s</c> field (reserved USD, tokens, calls) and in the <c>x{second}</c> field of its expiry second, exactly
/// like <c>n</c> per-call reservations. So the per-call scripts see every block (S + B ≤ L holds across both paths),
/// and a block whose replica died is given back by the per-call scripts' expiry, like any lost reservation.
/// Each scope also has a lease version <c>lv</c> (in the user's hash for a user budget, in the team period's hash for a
/// team budget): halts, resumes and limit changes bump it and publish "control-key version" on the prefix's channel.
/// </remarks>
internal static partial class LeaseScripts
{
    /// <summary>Numbers the grant script takes, packed as little-endian doubles.</summary>
    public const int GrantNumbers = 12;

    // KEYS: 1 control hash (halt h, version lv), 2 budget hash, 3 its zset of pending seconds.
    // ARGV: 1 packed now, expiry second, need usd, need tokens, want calls, limit usd, limit tokens, limit calls, period
    // end, retention, fraction, check halt (1/0); 2 the expiry second's field name; 3 the lease channel.
    // Returns { calls granted (0: no room for one call, -1: halted), version, spent+reserved usd, tokens, calls }.
    // A block is n calls of the asking call's worst case: n = min(want, fraction of the room left / one call), at least
    // one call while one fits, so blocks shrink as the limit nears down to one call's reservation.
    public static readonly RedisScript Grant = new("lease-grant", """
        local now, ei, nu, nt, want, lu, lt, lc, pe, retention, fraction, checkHalt = struct.unpack('<' .. string.rep('d', 12), ARGV[1])
        local xe = ARGV[2]
        local NONE = -1
        local nowSec = math.floor(now / 1000)
        local ctl = redis.call('HMGET', KEYS[1], 'h', 'lv')
        local version = tonumber(ctl[2]) or 0
        if checkHalt == 1 and ctl[1] then return { -1, version, 0, 0, 0 } end
        local v = redis.call('HMGET', KEYS[2], 's', xe, 'l')
        local su, st, sc, ru, rt, rc, xo, xm = 0, 0, 0, 0, 0, 0, NONE, NONE
        if v[1] then su, st, sc, ru, rt, rc, xo, xm = struct.unpack('<dddddddd', v[1]) end
        local dirty = false
        if xo ~= NONE and xo <= nowSec then
          -- Reservations and blocks whose second passed are given back, as the per-call scripts do.
          local es = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', nowSec, 'LIMIT', 0, 500)
          if #es > 0 then
            local f = {}
            for i = 1, #es do f[i] = 'x' .. es[i] end
            local xs = redis.call('HMGET', KEYS[2], unpack(f))
            for i = 1, #es do
              if xs[i] then
                local a, b, c = struct.unpack('<ddd', xs[i])
                ru = ru - a; rt = rt - b; rc = rc - c
              end
            end
            redis.call('HDEL', KEYS[2], unpack(f))
            redis.call('ZREM', KEYS[3], unpack(es))
          end
          local nx = redis.call('ZRANGE', KEYS[3], 0, 0)
          xo = tonumber(nx[1]) or NONE
          dirty = true
        end
        local limits = struct.pack('<ddd', lu, lt, lc)
        if v[3] and v[3] ~= limits then
          -- The limits changed: every replica drops its blocks taken under the old ones.
          version = redis.call('HINCRBY', KEYS[1], 'lv', 1)
          redis.call('PUBLISH', ARGV[3], KEYS[1] .. ' ' .. version)
        end
        local n = want
        local function fit(limit, used, need)
          if limit <= 0 or need <= 0 then return n end
          local room = limit - used
          if room < need then return 0 end
          return math.min(n, math.max(1, math.floor(room * fraction / need)))
        end
        n = fit(lu, su + ru, nu)
        n = fit(lt, st + rt, nt)
        n = fit(lc, sc + rc, 1)
        local reply = { n, version, su + ru, st + rt, sc + rc }
        if n <= 0 then
          if dirty then redis.call('HSET', KEYS[2], 's', struct.pack('<dddddddd', su, st, sc, ru, rt, rc, xo, xm)) end
          return reply
        end
        local gu, gt = n * nu, n * nt
        local exists = v[1] and true or false
        local list = not v[2] and xm ~= ei
        ru = ru + gu; rt = rt + gt; rc = rc + n
        if xo == NONE or ei < xo then xo = ei end
        if list then xm = ei end
        local eu, et, ec = 0, 0, 0
        if v[2] then eu, et, ec = struct.unpack('<ddd', v[2]) end
        local f = { 's', struct.pack('<dddddddd', su, st, sc, ru, rt, rc, xo, xm), xe, struct.pack('<ddd', eu + gu, et + gt, ec + n) }
        if v[3] ~= limits then f[#f + 1] = 'l'; f[#f + 1] = limits end
        if not exists then f[#f + 1] = 'pe'; f[#f + 1] = pe end
        redis.call('HSET', KEYS[2], unpack(f))
        local life = 0
        if pe > 0 then life = pe - now + retention end
        if list then
          redis.call('ZADD', KEYS[3], ei, ei)
          if life > 0 then redis.call('PEXPIRE', KEYS[3], life) end
        end
        if life > 0 and not exists then redis.call('PEXPIRE', KEYS[2], life) end
        return reply
        """);

    // KEYS: 1 budget hash, 2 the marker hash of returns (same slot). ARGV: 1 packed now, spent usd, tokens, calls,
    // released usd, tokens, calls, period end, retention; 2 the block's expiry field name; 3 the return's id.
    // Charges what the block's calls cost and gives back what it releases, unless its second already expired (then
    // Redis gave it back whole). A return whose id is in the marker hash already ran (a retry after a lost reply):
    // it does nothing and answers 0, so a return is charged once however often it is sent.
    public static readonly RedisScript Return = new("lease-return", """
        if redis.call('HSETNX', KEYS[2], ARGV[3], 1) == 0 then return 0 end
        redis.call('PEXPIRE', KEYS[2], 90000)
        local now, spu, spt, spc, relu, relt, relc, pe, retention = struct.unpack('<ddddddddd', ARGV[1])
        local NONE = -1
        local v = redis.call('HMGET', KEYS[1], 's', ARGV[2])
        local su, st, sc, ru, rt, rc, xo, xm = 0, 0, 0, 0, 0, 0, NONE, NONE
        if v[1] then su, st, sc, ru, rt, rc, xo, xm = struct.unpack('<dddddddd', v[1]) end
        su = su + spu; st = st + spt; sc = sc + spc
        if v[2] then
          ru = ru - relu; rt = rt - relt; rc = rc - relc
          local eu, et, ec = struct.unpack('<ddd', v[2])
          if ec - relc <= 0 then
            redis.call('HDEL', KEYS[1], ARGV[2])
          elseif relc > 0 or relu > 0 or relt > 0 then
            redis.call('HSET', KEYS[1], ARGV[2], struct.pack('<ddd', eu - relu, et - relt, ec - relc))
          end
        end
        redis.call('HSET', KEYS[1], 's', struct.pack('<dddddddd', su, st, sc, ru, rt, rc, xo, xm))
        if not v[1] and pe > 0 and pe - now + retention > 0 then redis.call('PEXPIRE', KEYS[1], pe - now + retention) end
        return 1
        """);

    // KEYS: 1 control hash. ARGV: 1 the lease channel. Bumps the lease version and tells every replica.
    public static readonly RedisScript Bump = new("lease-bump", """
        local v = redis.call('HINCRBY', KEYS[1], 'lv', 1)
        redis.call('PUBLISH', ARGV[1], KEYS[1] .. ' ' .. v)
        return v
        """);

    public static RedisScript[] All => [Grant, Return, Bump, GrantRate, ReturnRate, GrantInFlight, ReturnInFlight];
}
