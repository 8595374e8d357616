using LlmGateway.Redis;

namespace LlmGateway.Budgets;

/// <summary>The settlement script (see <see cref="RedisAdmissionScripts"/>).</summary>
internal static partial class RedisAdmissionScripts
{
    // Settle (mode 1: the call happened, charge what it cost) or release (0: it never happened, undo it) a batch of
    // reservations: one script for several calls, as the store sends the settlements that queued while the previous
    // batch was in flight together (EVALSHA's own cost, ~45k Redis instructions, is then paid once per batch).
    // KEYS: 9 per item, as Reserve's. ARGV: 4 per item: 1 the numbers below packed as 17 little-endian doubles,
    //       2 request hash, 3 the expiry second's field name, 4 the admission second's (as Reserve's). Numbers: now, mode, expiry second, admission second, reserved usd, reserved tokens, actual
    //       usd, actual tokens, hasTeam, hasRun, hasUserRate, hasKeyRate, user period end, team period end, retention,
    //       run key life, run key refresh
    public static readonly RedisScript Finish = new("finish", Prelude + """
        local function finishOne(ko, blob, hashArg, xe, wa)
          local nowMs, mode, e, a, ru, rt, au, at, hasTeam, hasRun, hasUserRate, hasKeyRate, uEnd, tEnd, retention, runLife,
                refreshEvery = sunpack('<' .. string.rep('d', 17), blob)
          setNow(nowMs)
          local settle = mode == 1
          local hash = hashArg
          -- A budget scope (v: 1 s, 2 x{e}): charge (settle), and give the reservation back unless its second expired.
          local function finish(h, v, f)
            local su, st, sc, r1, r2, r3, xo, xm = 0, 0, 0, 0, 0, 0, NONE, NONE
            if v[1] then su, st, sc, r1, r2, r3, xo, xm = sunpack('<dddddddd', v[1]) end
            if settle then su = su + au; st = st + at; sc = sc + 1 end
            if v[2] then
              r1 = r1 - ru; r2 = r2 - rt; r3 = r3 - 1
              local eu, et, ec = sunpack('<ddd', v[2])
              if ec <= 1 then
                -- The second's last held call: its field goes (the hash stays small), its listing stays until it expires.
                hdel(h, xe)
              else
                add(f, xe, spack('<ddd', eu - ru, et - rt, ec - 1))
              end
            end
            if settle or v[2] then add(f, 's', spack('<dddddddd', su, st, sc, r1, r2, r3, xo, xm)) end
            if #f > 0 then hset(h, unpack(f)) end
          end
          local function period(h, pe)
            local v = hmget(h, 's', xe)
            finish(h, v, {})
            if settle and not v[1] and pe > 0 and pe - now + retention > 0 then
              pexpire(h, pe - now + retention)
            end
          end
          period(KEYS[ko + 3], uEnd)
          if hasTeam == 1 then period(KEYS[ko + 5], tEnd) end
          if hasRun == 1 then
            local q = 'q:' .. hash
            local v = hmget(KEYS[ko + 7], 's', xe, 'r', q)
            if v[3] then
              local start, _, refreshed, dl = sunpack('<dddd', v[3])
              local refresh = settle and now - refreshed >= refreshEvery
              local f = { 'r', spack('<dddd', start, now, refresh and now or refreshed, dl) }
              if not settle and hash ~= '' and v[4] then
                -- The call never happened: it does not count as a repeat either.
                add(f, q, tonumber(v[4]) - 1)
              end
              finish(KEYS[ko + 7], v, f)
              if refresh then
                pexpire(KEYS[ko + 7], runLife)
                pexpire(KEYS[ko + 8], runLife)
              end
            end
          end
          -- The user's in-flight slot and the rate windows: a settle corrects the tokens, a release takes the call out,
          -- both only while the call's second is still in the window.
          local ai = a
          local function rate(h, f, n, k, o, second)
            if o == NONE or o > ai or not second then return n, k end
            local c, t = sunpack('<dd', second)
            if settle then
              add(f, wa, spack('<dd', c, t + at - rt))
              return n, k + at - rt
            end
            if c <= 1 then
              -- The second's last live call: no zero-valued field is left behind.
              hdel(h, wa)
            else
              add(f, wa, spack('<dd', c - 1, t - rt))
            end
            return n - 1, k - rt
          end
          local uv = hmget(KEYS[ko + 1], 'u', xe, wa)
          if uv[1] then
            local inFlight, xo, xm, n, k, o = subject(uv[1])
            local f = {}
            if uv[2] then
              inFlight = inFlight - 1
              if tonumber(uv[2]) <= 1 then hdel(KEYS[ko + 1], xe) else add(f, xe, tonumber(uv[2]) - 1) end
            end
            if hasUserRate == 1 then n, k = rate(KEYS[ko + 1], f, n, k, o, uv[3]) end
            add(f, 'u', spack('<dddddd', inFlight, xo, xm, n, k, o))
            hset(KEYS[ko + 1], unpack(f))
          end
          if hasKeyRate == 1 then
            local kv = hmget(KEYS[ko + 9], 'u', wa)
            if kv[1] then
              local _, _, _, n, k, o = subject(kv[1])
              local f = {}
              n, k = rate(KEYS[ko + 9], f, n, k, o, kv[2])
              add(f, 'u', spack('<dddddd', 0, NONE, NONE, n, k, o))
              hset(KEYS[ko + 9], unpack(f))
            end
          end
        end
        batching = #ARGV > 4
        for i = 1, #ARGV / 4 do finishOne((i - 1) * 9, ARGV[4 * i - 3], ARGV[4 * i - 2], ARGV[4 * i - 1], ARGV[4 * i]) end
        flush()
        return #ARGV / 4
        """);
}
