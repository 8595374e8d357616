using LlmGateway.Redis;

namespace LlmGateway.Budgets;

/// <summary>The admission scripts (see <see cref="RedisAdmissionScripts"/>).</summary>
internal static partial class RedisAdmissionScripts
{
    /// <summary>Numbers <see cref="Reserve"/> answers per admission.</summary>
    public const int ReserveReplyLength = 22;

    /// <summary>Numbers <see cref="ReserveScoped"/> answers per scope step.</summary>
    public const int ScopedReplyLength = 13;

    // The admission rules, one scope at a time: the user (keys u, ux, b:u, bx:u: one hash slot, tag {u:…}), the team
    // period (b:t, bx:t: {t:…}), the run (run, runx: {r:…}) and the gateway key's rate window (kw: {k:…}). Each scope
    // reads its hashes (read), finds its first failing check (check), and then either holds the call's worst case
    // (hold) or writes back what reading changed (keep: expired reservations given back, seconds that left a rate
    // window). Both admission scripts are built from these functions, so the rules are stated once: Reserve runs every
    // scope of a call in one script (a single Redis), ReserveScoped one scope per step (Redis Cluster, one slot per
    // script; the store compensates the scopes that held when another refused).
    //
    // A check's rank is its place in the order of every scope's checks — control first, then what no retry fixes,
    // then what waiting fixes, as the in-memory store checks them: 1 user halted, 2 run halted, 3 run deadline, 4 loop,
    // 5 user budget, 6 team budget, 7 run budget, 8 user in flight, 9 run in flight, 10 user rate, 11 key rate. The
    // call's refusal is the failing check of lowest rank over its scopes, whichever script decided them.
    //
    // A call's numbers arrive packed (one argument, no string parsing): now, expiry second, usd, tokens, hasTeam,
    // hasRun, hasUserRate, hasKeyRate (1/0), user limits (usd tokens calls), user period end, team limits, team period
    // end, run limits, deadline, max repeats, run max in flight, user max in flight, user rpm, user tpm, key rpm, key
    // tpm, retention, run idle, in-flight retry, run key life, run key refresh. With them: the request hash, the user,
    // the expiry second's field name ('x' .. second) and the admission second's ('w' .. second): formatting a number
    // in Lua costs Redis ~0.5 µs, the caller next to nothing.
    internal const string ReserveScopes = ReserveCall + ReserveSubjects + ReserveRun + ReserveReply + ReserveAnswer;

    // What every scope needs: the call's numbers, the budget checks and holds.
    internal const string ReserveCall = """
        local numbers = '<' .. string.rep('d', 32)
        local nowMs, ei, usd, tok, hasTeam, hasRun, hasUserRate, hasKeyRate, uLu, uLt, uLc, uEnd, tLu, tLt, tLc, tEnd,
              rLu, rLt, rLc, deadline, maxRepeats, runMaxInFlight, userMaxInFlight, userRpm, userTpm, keyRpm, keyTpm,
              retention, idle, inFlightRetry, runLife, refreshEvery
        local hash, user, xe, wn
        local function call(blob, h, u, x, w)
          nowMs, ei, usd, tok, hasTeam, hasRun, hasUserRate, hasKeyRate, uLu, uLt, uLc, uEnd, tLu, tLt, tLc, tEnd,
            rLu, rLt, rLc, deadline, maxRepeats, runMaxInFlight, userMaxInFlight, userRpm, userTpm, keyRpm, keyTpm,
            retention, idle, inFlightRetry, runLife, refreshEvery = sunpack(numbers, blob)
          hash, user, xe, wn = h, u, x, w
          setNow(nowMs)
        end
        local PASS = 0
        -- What a budget scope has spent plus holds (USD, tokens, calls): the store computes the fractions spent.
        local function used(b)
          if b then return b.su + b.ru, b.st + b.rt, b.sc + b.rc end
          return 0, 0, 0
        end
        -- An amount of 0 never fails its limit: a free model is never blocked by a USD budget.
        local function check(b, lu, lt, lc)
          if lu > 0 and usd > 0 and b.su + b.ru + usd > lu then return 1, lu end
          if lt > 0 and tok > 0 and b.st + b.rt + tok > lt then return 2, lt end
          if lc > 0 and b.sc + b.rc + 1 > lc then return 3, lc end
          return 0, 0
        end
        -- Holds the worst case in budget scope b, each hash in one HSET.
        local function hold(b, limits, f, life)
          -- A second is listed once: when it is new, unless it is the one listed last (a second's field is deleted
          -- when its last call finishes, and comes back with the next call).
          local list = not b.v[2] and b.xm ~= ei
          b.ru = b.ru + usd; b.rt = b.rt + tok; b.rc = b.rc + 1
          if b.xo == NONE or ei < b.xo then b.xo = ei end
          if list then b.xm = ei end
          local eu, et, ec = 0, 0, 0
          if b.v[2] then eu, et, ec = sunpack('<ddd', b.v[2]) end
          add(f, 's', state(b))
          add(f, xe, spack('<ddd', eu + usd, et + tok, ec + 1))
          if b.v[3] ~= limits then add(f, 'l', limits) end
          hset(b.h, unpack(f))
          if list then
            redis.call('ZADD', b.z, ei, ei)
            if life > 0 then pexpire(b.z, life) end
          end
          if life > 0 and not b.exists then pexpire(b.h, life) end
        end

        """;

    // The user, the team and the gateway key (and their rate windows): not in the run-only script.
    internal const string ReserveSubjects = """
        -- When the oldest seconds of window s, leaving it, free `need` calls (tokens: 2nd counter); -1 never.
        local function freeing(s, tokens, need)
          if s.o == NONE then return -1 end
          local f = {}
          for b = s.o, nowSec do f[#f + 1] = 'w' .. b end
          local v = hmget(s.h, unpack(f))
          local freed = 0
          for i = 1, #f do
            if v[i] then
              local c, t = sunpack('<dd', v[i])
              if tokens then freed = freed + t else freed = freed + c end
            end
            if freed >= need then return (s.o + i) * 1000 + 60000 end
          end
          return -1
        end
        local function checkRate(s, rpm, tpm)
          if rpm > 0 and s.n + 1 > rpm then
            local at = freeing(s, false, s.n + 1 - rpm)
            if at < 0 then return 4, rpm, -1 end
            return 4, rpm, at - now
          end
          if tpm > 0 and tok > 0 and s.k + tok > tpm then
            if tok > tpm then return 5, tpm, -1 end
            local at = freeing(s, true, s.k + tok - tpm)
            if at < 0 then return 5, tpm, -1 end
            return 5, tpm, at - now
          end
          return 0, 0, -1
        end
        local function periodFields(b, pe)
          if b.exists then return {} end
          return { 'pe', pe }
        end
        local function take(s, f, second)
          s.n = s.n + 1
          s.k = s.k + tok
          if s.o == NONE then s.o = nowSec end
          local c, t = 0, 0
          if second then c, t = sunpack('<dd', second) end
          add(f, wn, spack('<dd', c + 1, t + tok))
        end

        -- The user: halt, budget, in-flight cap, rate window. Checks of rank `upTo` or above are skipped (the caller
        -- already has a failure that comes first).
        local uh, uz, uv, inFlight, userXo, userXm, un, uk, uo, userDirty, us, ub
        local function userRead(k1, k2, k3, k4)
          uh, uz = k1, k2
          uv = hmget(k1, 'h', 'u', xe, wn)
          inFlight, userXo, userXm, un, uk, uo = subject(uv[2])
          userDirty = false
          if userXo ~= NONE and userXo <= nowSec then
            local _, _, c, nx = expire(k1, k2, false)
            inFlight = inFlight - c
            userXo = nx
            userDirty = true
          end
          us = false
          if hasUserRate == 1 then us = window(k1, un, uk, uo) end
          ub = budget(k3, k4, xe, 'l')
        end
        local function userCheck(upTo)
          if uv[1] then return 1, 6, 1, 0, 0, -1 end
          if upTo <= 5 then return PASS end
          local kind, value = check(ub, uLu, uLt, uLc)
          if kind > 0 then
            local retry = -1
            if uEnd > 0 then retry = uEnd - now end
            return 5, 1, 1, kind, value, retry
          end
          if upTo <= 8 then return PASS end
          if userMaxInFlight > 0 and inFlight + 1 > userMaxInFlight then return 8, 2, 1, 6, userMaxInFlight, inFlightRetry end
          if us and upTo > 10 then
            local retry
            kind, value, retry = checkRate(us, userRpm, userTpm)
            if kind > 0 then return 10, 2, 1, kind, value, retry end
          end
          return PASS
        end
        local function userKeep()
          if userDirty or (us and us.dirty) then
            local w = us or { n = un, k = uk, o = uo }
            hset(uh, 'u', spack('<dddddd', inFlight, userXo, userXm, w.n, w.k, w.o))
          end
          if ub.dirty then hset(ub.h, 's', state(ub)) end
        end
        local function userHold()
          hold(ub, spack('<ddd', uLu, uLt, uLc), periodFields(ub, uEnd), uEnd > 0 and uEnd - now + retention or 0)
          local list = not uv[3] and userXm ~= ei
          if userXo == NONE or ei < userXo then userXo = ei end
          if list then
            userXm = ei
            redis.call('ZADD', uz, ei, ei)
          end
          local f = { xe, (tonumber(uv[3]) or 0) + 1 }
          -- A user's hash holds up to 61 rate-window fields: a value over 64 bytes makes Redis keep it as a hash
          -- table (constant-time field lookups) rather than a list it scans for every field of every HMGET and HSET.
          if not uv[2] then add(f, 'enc', string.rep('-', 65)) end
          local w = us or { n = un, k = uk, o = uo }
          if us then take(us, f, uv[4]) end
          add(f, 'u', spack('<dddddd', inFlight + 1, userXo, userXm, w.n, w.k, w.o))
          hset(uh, unpack(f))
        end

        -- The team's period budget.
        local tb
        local function teamRead(k5, k6) tb = budget(k5, k6, xe, 'l') end
        local function teamCheck(upTo)
          if upTo <= 6 then return PASS end
          local kind, value = check(tb, tLu, tLt, tLc)
          if kind > 0 then
            local retry = -1
            if tEnd > 0 then retry = tEnd - now end
            return 6, 1, 2, kind, value, retry
          end
          return PASS
        end
        local function teamKeep() if tb.dirty then hset(tb.h, 's', state(tb)) end end
        local function teamHold() hold(tb, spack('<ddd', tLu, tLt, tLc), periodFields(tb, tEnd), tEnd > 0 and tEnd - now + retention or 0) end

        -- The gateway key's rate window.
        local kh, kv, ks
        local function keyRead(k9)
          kh = k9
          kv = hmget(k9, 'u', wn)
          local _, _, _, kn, kk, ko = subject(kv[1])
          ks = window(k9, kn, kk, ko)
        end
        local function keyCheck(upTo)
          if upTo <= 11 then return PASS end
          local kind, value, retry = checkRate(ks, keyRpm, keyTpm)
          if kind > 0 then return 11, 2, 4, kind, value, retry end
          return PASS
        end
        local function keyKeep() if ks.dirty then hset(kh, 'u', spack('<dddddd', 0, NONE, NONE, ks.n, ks.k, ks.o)) end end
        local function keyHold()
          local kf = {}
          if not kv[1] then add(kf, 'enc', string.rep('-', 65)) end
          take(ks, kf, kv[2])
          add(kf, 'u', spack('<dddddd', 0, NONE, NONE, ks.n, ks.k, ks.o))
          hset(kh, unpack(kf))
        end

        """;

    internal const string ReserveRun = """
        -- The run: halt, deadline, loop guard, budget, in-flight cap.
        local run, runExtra
        local function runRead(k7, k8)
          -- v: 3 limits, 4 halted, 5 r = (start, last activity, last key-lifetime refresh, deadline, steps), 6 user,
          -- 7 repeats of this request, 8 o = (owner, owned until ms): a replica's exclusive run block (see
          -- docs/redis-scale-out.md), 9 a = (replica, admissions in a row, the first's ms): run steps only. Steps (the calls admitted,
          -- LLM and tool: a call's step is its index in the run) ride in r, which every admission writes anyway:
          -- counting them costs no command; r of 32 bytes has none yet.
          run = budget(k7, k8, xe, 'l', 'h', 'r', 'user', 'q:' .. hash, 'o', 'a')
          if run.v[5] then
            run.start, run.la, run.refreshed, run.dl = sunpack('<dddd', run.v[5])
            run.steps = #run.v[5] >= 40 and sunpack('<d', run.v[5], 33) or 0
            if now - run.la >= idle then
              -- Idle for too long: the run is forgotten and starts afresh.
              del(k7, k8)
              run = budget(k7, k8, xe, 'l', 'h', 'r', 'user', 'q:' .. hash, 'o', 'a')
            end
          end
          if not run.v[5] then run.start, run.la, run.refreshed, run.dl, run.steps = -1, -1, -1, 0, 0 end
          run.halted = run.v[4]
          run.repeats = tonumber(run.v[7]) or 0
          if not run.v[5] then run.absent = true end
        end
        -- Whether a replica holds the run's exclusive block now: its calls are decided there, and nowhere else.
        local function runOwned()
          if not run.v[8] then return false end
          local _, untilMs = sunpack('<dd', run.v[8])
          return untilMs > now
        end
        local function runCheck(upTo)
          if not run.absent then
            -- 99: owned by a replica's exclusive block (never a caller's answer: the store asks the owner to let go and
            -- tries again). Rank 2, as the run's halt: only a user halt outranks it.
            if run.v[8] and runOwned() then return 2, 99, 3, 0, 0, -1 end
            if run.halted then return 2, 5, 3, 0, 0, -1 end
            if upTo <= 3 then return PASS end
            if deadline > 0 and run.start >= 0 and now >= run.start + deadline then return 3, 3, 3, 7, deadline, -1 end
            if upTo <= 4 then return PASS end
            if maxRepeats > 0 and hash ~= '' and run.repeats + 1 > maxRepeats then return 4, 4, 3, 8, maxRepeats, -1 end
          end
          if upTo <= 7 then return PASS end
          local kind, value = check(run, rLu, rLt, rLc)
          if kind > 0 then return 7, 1, 3, kind, value, -1 end
          if upTo <= 9 then return PASS end
          if runMaxInFlight > 0 and run.rc + 1 > runMaxInFlight then return 9, 2, 3, 6, runMaxInFlight, inFlightRetry end
          return PASS
        end
        local function runKeep() if run.dirty then hset(run.h, 's', state(run)) end end
        local function runHold()
          -- Key lifetimes are refreshed at most once per refresh interval, and r records when.
          local refresh = run.refreshed < 0 or now - run.refreshed >= refreshEvery
          run.steps = run.steps + 1
          local f = { 'r', spack('<ddddd', run.start < 0 and now or run.start, now, refresh and now or run.refreshed, deadline, run.steps) }
          if run.v[6] ~= user then add(f, 'user', user) end
          if hash ~= '' then add(f, 'q:' .. hash, run.repeats + 1) end
          if runExtra then add(f, 'a', runExtra) end
          hold(run, spack('<ddd', rLu, rLt, rLc), f, runLife)
          if refresh then
            pexpire(run.h, runLife)
            pexpire(run.z, runLife)
          end
        end

        """;

    internal const string ReserveReply = """
        -- A rate window's counters before the call took its place (the store computes the x-ratelimit headers).
        local function counters(s)
          if s then return s.n, s.k, s.o end
          return 0, 0, NONE
        end
        -- The failing check of lowest rank found so far (r[1] = 0: none).
        local r
        local function first(rank, ...)
          if rank > 0 and (r[1] == 0 or rank < r[1]) then r = { rank, ... } end
        end

        """;

    // The script's reply: every call's (or step's) numbers in order.
    internal const string ReserveAnswer = """
        local out, nout = {}, 0
        local function answer(...)
          local r = { ... }
          for i = 1, #r do out[nout + i] = r[i] end
          nout = nout + #r
        end

        """;

    // Admits a batch of calls, in order, as if each were its own script: the store sends the admissions that queued
    // while the previous batch was in flight together, and the hash cache (Prelude) makes calls on the same scopes
    // share their reads and writes. Every scope of a call is decided here: only on a single Redis (its keys are in
    // several hash slots).
    // KEYS: 9 per call: 1 u, 2 ux, 3 b:u, 4 bx:u, 5 b:t, 6 bx:t, 7 run, 8 runx, 9 kw:k
    // ARGV: 5 per call: the numbers packed as 32 little-endian doubles, request hash, user, expiry field, admission field.
    // Returns 22 numbers per call: admitted, rejection, scope, limit, limit value, retry-after ms (-1 none), what the
    //          user's, team's and run's budgets had used before the call (USD, tokens, calls each), the user's rate
    //          window n k o and the key's before the call, the call's step in its run (0: no run, or refused).
    public static readonly RedisScript Reserve = new("reserve", Prelude + ReserveScopes + """
        batching = #ARGV > 5
        for i = 1, #ARGV / 5 do
          local ko, ao = (i - 1) * 9, (i - 1) * 5
          call(ARGV[ao + 1], ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4], ARGV[ao + 5])
          userRead(KEYS[ko + 1], KEYS[ko + 2], KEYS[ko + 3], KEYS[ko + 4])
          if hasTeam == 1 then teamRead(KEYS[ko + 5], KEYS[ko + 6]) end
          if hasRun == 1 then runRead(KEYS[ko + 7], KEYS[ko + 8]) end
          if hasKeyRate == 1 then keyRead(KEYS[ko + 9]) end
          local n1, k1, o1 = counters(us)
          local n2, k2, o2 = counters(hasKeyRate == 1 and ks)
          local uu, ut, uc = used(ub)
          local tu, tt, tc = used(hasTeam == 1 and tb)
          local ru, rt, rc = used(hasRun == 1 and run)
          -- The failing check of lowest rank over the scopes; each skips what ranks after the failure found so far.
          r = { userCheck(99) }
          if hasTeam == 1 then first(teamCheck(r[1] > 0 and r[1] or 99)) end
          if hasRun == 1 then first(runCheck(r[1] > 0 and r[1] or 99)) end
          if hasKeyRate == 1 then first(keyCheck(r[1] > 0 and r[1] or 99)) end
          if r[1] == 0 then
            userHold()
            if hasTeam == 1 then teamHold() end
            if hasRun == 1 then runHold() end
            if hasKeyRate == 1 then keyHold() end
            answer(1, 0, 0, 0, 0, -1)
          else
            userKeep()
            if hasTeam == 1 then teamKeep() end
            if hasRun == 1 then runKeep() end
            if hasKeyRate == 1 then keyKeep() end
            answer(0, r[2], r[3], r[4], r[5], r[6])
          end
          answer(uu, ut, uc, tu, tt, tc, ru, rt, rc, n1, k1, o1, n2, k2, o2, hasRun == 1 and r[1] == 0 and run.steps or 0)
        end
        flush()
        return out
        """);

    // One scope of each of a batch of calls (Redis Cluster: every step's keys are in one hash slot, and the store sends
    // one script per slot). Each step decides its scope alone and holds the call there when every check of the scope
    // passes; the store then admits a call whose steps all held and gives back (releases) the steps that held for a
    // call another step refused.
    // KEYS per step: the scope's keys, as in Reserve: user 4 (u ux b:u bx:u), team 2, run 2, key 1.
    // ARGV: 6 per step: scope (1 user, 2 team, 3 run, 4 key), then Reserve's 5.
    // Returns 13 numbers per step: rank (0: held), rejection, scope, limit, limit value, retry-after ms, what the
    //          scope's budget had used before the call (USD, tokens, calls; user, team, run), its rate window n k o before
    //          the call (user, key), the call's step in its run (a run step that held; else 0).
    public static readonly RedisScript ReserveScoped = new("reserve-scoped", Prelude + ReserveScopes + """
        batching = #ARGV > 6
        local ko = 0
        for i = 1, #ARGV / 6 do
          local ao = (i - 1) * 6
          local scope = tonumber(ARGV[ao + 1])
          call(ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4], ARGV[ao + 5], ARGV[ao + 6])
          local b, n, k, o
          if scope == 1 then
            userRead(KEYS[ko + 1], KEYS[ko + 2], KEYS[ko + 3], KEYS[ko + 4])
            ko = ko + 4
            n, k, o = counters(us)
            r, b = { userCheck(99) }, { used(ub) }
            if r[1] == 0 then userHold() else userKeep() end
          elseif scope == 2 then
            teamRead(KEYS[ko + 1], KEYS[ko + 2])
            ko = ko + 2
            n, k, o = counters(false)
            r, b = { teamCheck(99) }, { used(tb) }
            if r[1] == 0 then teamHold() else teamKeep() end
          elseif scope == 3 then
            runRead(KEYS[ko + 1], KEYS[ko + 2])
            ko = ko + 2
            n, k, o = counters(false)
            r, b = { runCheck(99) }, { used(run) }
            if r[1] == 0 then runHold() else runKeep() end
          else
            keyRead(KEYS[ko + 1])
            ko = ko + 1
            n, k, o = counters(ks)
            r, b = { keyCheck(99) }, { used(false) }
            if r[1] == 0 then keyHold() else keyKeep() end
          end
          if r[1] == 0 then answer(0, 0, 0, 0, 0, -1) else answer(r[1], r[2], r[3], r[4], r[5], r[6]) end
          answer(b[1], b[2], b[3], n, k, o, scope == 3 and r[1] == 0 and run.steps or 0)
        end
        flush()
        return out
        """);
}
