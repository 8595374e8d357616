using LlmGateway.Redis;

namespace LlmGateway.Budgets;

/// <summary>The settlement scripts (see <see cref="RedisAdmissionScripts"/>).</summary>
internal static partial class RedisAdmissionScripts
{
    // Settle (mode 1: the call happened, charge what it cost), release (0: it never happened, undo it) or undo (2: a
    // release of a scope that held for a call another scope refused, on Redis Cluster: a run the call created is
    // forgotten again, as if it had never been admitted) one scope at a time, as the admission scripts decide them.
    // Numbers, packed as 18 little-endian doubles: now, mode, expiry second, admission second, reserved usd, reserved
    // tokens, actual usd, actual tokens, hasTeam, hasRun, hasUserRate, hasKeyRate, user period end, team period end,
    // retention, run key life, run key refresh, admission ms. With them: the request hash, the expiry second's field
    // name and the admission second's (as Reserve's).
    internal const string FinishScopes = FinishCall + FinishSubjects + FinishRun;

    // What every scope needs: the numbers, a budget scope's settlement, the marker.
    internal const string FinishCall = """
        local nowMs, mode, e, a, ru, rt, au, at, hasTeam, hasRun, hasUserRate, hasKeyRate, uEnd, tEnd, retention, runLife,
              refreshEvery, admittedMs
        local settle, hash, xe, wa
        local numbers = '<' .. string.rep('d', 18)
        local function call(blob, h, x, w)
          nowMs, mode, e, a, ru, rt, au, at, hasTeam, hasRun, hasUserRate, hasKeyRate, uEnd, tEnd, retention, runLife,
            refreshEvery, admittedMs = sunpack(numbers, blob)
          setNow(nowMs)
          settle = mode == 1
          hash, xe, wa = h, x, w
        end
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
        -- A settlement's marker (idempotency): the first finish of reservation `id` in marker hash `mk` (a key of the
        -- scope's slot, one per 10 s of first attempts) runs, a repeat of it (a retry of a finish whose reply was lost)
        -- does nothing. An empty `mk` (the undo of a refused call's holds, never retried) has no marker.
        local function first(mk, id)
          if mk == '' then return true end
          if batching and not cache[mk] then
            -- A marker hash gathers a scope's finishes of 10 s, up to hundreds: a value over 64 bytes makes Redis keep
            -- it as a hash table (constant-time HSETNX), not a list every HSETNX scans twice (~30k instructions at
            -- 500 fields). Once per hash and batch; a finish alone (no load, small hashes) goes without.
            redis.call('HSETNX', mk, 'enc', string.rep('-', 65))
          end
          if redis.call('HSETNX', mk, id, 1) == 0 then return false end
          -- Through the cache: a batch's finishes of one run share its marker hash, and one PEXPIRE (at the flush).
          pexpire(mk, markerLife)
          return true
        end

        """;

    // The user, the team and the gateway key: not in the run-only script.
    internal const string FinishSubjects = """
        local function period(h, pe)
          local v = hmget(h, 's', xe)
          finish(h, v, {})
          if settle and not v[1] and pe > 0 and pe - now + retention > 0 then
            pexpire(h, pe - now + retention)
          end
        end
        -- The in-flight slot and the rate windows: a settle corrects the tokens, a release takes the call out, both only
        -- while the call's second is still in the window.
        -- An emptied window has no oldest second (as the in-memory store's), so an undone hold leaves no trace in it.
        local function rate(h, f, n, k, o, second)
          if o == NONE or o > a or not second then return n, k, o end
          local c, t = sunpack('<dd', second)
          if settle then
            add(f, wa, spack('<dd', c, t + at - rt))
            return n, k + at - rt, o
          end
          if c <= 1 then
            -- The second's last live call: no zero-valued field is left behind.
            hdel(h, wa)
          else
            add(f, wa, spack('<dd', c - 1, t - rt))
          end
          if n <= 1 then return 0, k - rt, NONE end
          return n - 1, k - rt, o
        end

        -- KEYS: u, b:u (the user's slot).
        local function userFinish(k1, k3)
          period(k3, uEnd)
          local uv = hmget(k1, 'u', xe, wa)
          if uv[1] then
            local inFlight, xo, xm, n, k, o = subject(uv[1])
            local f = {}
            if uv[2] then
              inFlight = inFlight - 1
              if tonumber(uv[2]) <= 1 then hdel(k1, xe) else add(f, xe, tonumber(uv[2]) - 1) end
            end
            if hasUserRate == 1 then n, k, o = rate(k1, f, n, k, o, uv[3]) end
            add(f, 'u', spack('<dddddd', inFlight, xo, xm, n, k, o))
            hset(k1, unpack(f))
          end
        end
        local function teamFinish(k5) period(k5, tEnd) end
        -- KEYS: kw.
        local function keyFinish(k9)
          local kv = hmget(k9, 'u', wa)
          if kv[1] then
            local _, _, _, n, k, o = subject(kv[1])
            local f = {}
            n, k, o = rate(k9, f, n, k, o, kv[2])
            add(f, 'u', spack('<dddddd', 0, NONE, NONE, n, k, o))
            hset(k9, unpack(f))
          end
        end

        """;

    internal const string FinishRun = """
        -- KEYS: run, runx.
        local function runFinish(k7, k8)
          local q = 'q:' .. hash
          local v = hmget(k7, 's', xe, 'r', q, 'h')
          if not v[3] then return end
          local start, _, refreshed, dl = sunpack('<dddd', v[3])
          if mode == 2 and start == admittedMs and not v[5] and v[1] and v[2] then
            local _, _, sc, _, _, rc = sunpack('<dddddddd', v[1])
            if sc == 0 and rc == 1 then
              -- The refused call created the run and nothing else is in it: the run was never started.
              del(k7, k8)
              return
            end
          end
          local refresh = settle and now - refreshed >= refreshEvery
          -- The step counter after the four times (Reserve's runHold) is kept as it is.
          local f = { 'r', spack('<dddd', start, now, refresh and now or refreshed, dl) .. string.sub(v[3], 33) }
          if not settle and hash ~= '' and v[4] then
            -- The call never happened: it does not count as a repeat either.
            add(f, q, tonumber(v[4]) - 1)
          end
          finish(k7, v, f)
          if refresh then
            pexpire(k7, runLife)
            pexpire(k8, runLife)
          end
        end

        """;

    // A batch of settlements and releases, every scope of each (a single Redis): one script for several calls, as the
    // store sends the settlements that queued while the previous batch was in flight together (EVALSHA's own cost,
    // ~45k Redis instructions, is then paid once per batch).
    // KEYS: 9 per item, as Reserve's. ARGV: 6 per item: the numbers, request hash, expiry field, admission field, the
    // marker hash (in the user's slot: the script is atomic over every scope) and the reservation id.
    public static readonly RedisScript Finish = new("finish", Prelude + MarkerLife + FinishScopes + """
        batching = #ARGV > 6
        for i = 1, #ARGV / 6 do
          local ko, ao = (i - 1) * 9, (i - 1) * 6
          if first(ARGV[ao + 5], ARGV[ao + 6]) then
            call(ARGV[ao + 1], ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4])
            userFinish(KEYS[ko + 1], KEYS[ko + 3])
            if hasTeam == 1 then teamFinish(KEYS[ko + 5]) end
            if hasRun == 1 then runFinish(KEYS[ko + 7], KEYS[ko + 8]) end
            if hasKeyRate == 1 then keyFinish(KEYS[ko + 9]) end
          end
        end
        flush()
        return #ARGV / 6
        """);

    // One scope of each of a batch of settlements, releases and undos (Redis Cluster: one script per hash slot).
    // KEYS per step: the scope's keys as in ReserveScoped (user 4, team 2, run 2, key 1). ARGV: 7 per step: scope
    // (1 user, 2 team, 3 run, 4 key), then Finish's 6 (the marker hash in the scope's own slot: each scope's step is
    // marked on its own, so a retry redoes only the steps that did not run).
    public static readonly RedisScript FinishScoped = new("finish-scoped", Prelude + MarkerLife + FinishScopes + """
        batching = #ARGV > 7
        local ko = 0
        for i = 1, #ARGV / 7 do
          local ao = (i - 1) * 7
          local scope = tonumber(ARGV[ao + 1])
          local fresh = first(ARGV[ao + 6], ARGV[ao + 7])
          call(ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4], ARGV[ao + 5])
          if not fresh then
            -- Done before: only its keys are skipped.
            ko = ko + (scope == 1 and 4 or scope == 4 and 1 or 2)
          elseif scope == 1 then
            userFinish(KEYS[ko + 1], KEYS[ko + 3])
            ko = ko + 4
          elseif scope == 2 then
            teamFinish(KEYS[ko + 1])
            ko = ko + 2
          elseif scope == 3 then
            runFinish(KEYS[ko + 1], KEYS[ko + 2])
            ko = ko + 2
          else
            keyFinish(KEYS[ko + 1])
            ko = ko + 1
          end
        end
        flush()
        return #ARGV / 7
        """);

    /// <summary>How long a marker hash lives after its last write (ms): the 10 s of first attempts it gathers, the 60 s they are retried, and a margin.</summary>
    internal const long MarkerLifeMs = 90_000;

    private const string MarkerLife = "local markerLife = 90000\n"; // MarkerLifeMs
}
