// Long because: the Redis ledger's Lua scripts are one program (shared helpers, one data layout); each
// script mirrors a BudgetLedger method line for line, and apart they would be harder to check against it.
//
// The Redis ledger's atomic steps. Each script runs whole inside Redis (nothing interleaves), so holds
// and charges of N processes × M runs are checked and applied all or nothing: no cap is ever committed
// past by a race. The arithmetic mirrors ledger.ts / scope.ts exactly (same fits, same binary search,
// same admission drawing); messages are worded in TypeScript from what a script returns (status.ts).
//
// Layout under KEYS[1] (the base, e.g. "dmcp:{budget}:"; the hash tag keeps every key in one slot):
//   day:<D>:server            hash  scope fields (below): the server's daily window of UTC day D
//   day:<D>:agent:<name>      hash  scope fields: an agent's daily window
//   day:<D>:agents            set   agents with a window that day
//   day:<D>:models            hash  "<model>\n<field>" → calls, tokens, usd (absent: no price), input, …
//   limits:agent              hash  agent → "<tokens>|<usd>" daily caps (empty: none; the latest openRun wins)
//   run:<id>                  hash  scope fields + agent, parent, root, depth, open, lbt/lbu (limited by
//                                   parent), label, model, adm (admission id), self xt/xu/xut/xc, tx (last touched)
//   run:<id>:children         list  child run ids, in opening order
//   run:<id>:rsv              set   the run's own open reservations
//   run:<id>:models           hash  "<model>\n<field>": spend of the run's subtree per model
//   rsv:<id>                  hash  run, day, dx (day expiry), agent, model, in, out, t, u ('' = unpriced),
//                                   pi/po (price per Mtok), st ('open' | 'orphaned')
//   rsv:<id>:end              string how a queue run's slice ended, 'committed' or 'released' (kept as
//                                   long as its commit or release asks: its worker reads it to know whether
//                                   the run's spend was counted)
//   open-runs                 string count of open runs
// Scope fields: lt/lu limits (absent: none), st/su spent, rt/ru reserved, n open holds, c calls, ut
// unpriced tokens. Numbers are stored and returned as strings ('%.17g': Lua numbers are doubles, and a
// number reply would be truncated to an integer). Daily keys expire two days after their day; run keys a
// while after their last change (open runs are refreshed by every step). Every call passes the ledger
// clock (unix seconds) as its last argument.

const PRELUDE = `
local B = KEYS[1]
-- The ledger clock (unix seconds) comes last in every call: expiries are relative to it, so a ledger
-- whose clock is not Redis's (tests of other days) still keeps a day two days past its end.
local NOW = tonumber(ARGV[#ARGV])
local EPS = 1e-9
local function num(v) if v == false or v == nil or v == '' then return nil end return tonumber(v) end
local function fmt(x) if x == nil then return '' end return string.format('%.17g', x) end
local function roundUsd(x) return math.floor(x * 1e9 + 0.5) / 1e9 end

local scopes = {}
local SCOPE_FIELDS = { 'lt', 'lu', 'st', 'su', 'rt', 'ru', 'n', 'c', 'ut', 'x' }
-- A scope from its fields as HMGET read them (from position i on). \`put\`: other fields of its hash
-- to write with it (one HSET per key and call: saveAll).
local function scopeOf(key, h, i)
  local s = { key = key, lt = num(h[i]), lu = num(h[i + 1]), st = num(h[i + 2]) or 0, su = num(h[i + 3]) or 0, rt = num(h[i + 4]) or 0,
              ru = num(h[i + 5]) or 0, n = num(h[i + 6]) or 0, c = num(h[i + 7]) or 0, ut = num(h[i + 8]) or 0, x = num(h[i + 9]), dirty = false, put = {} }
  scopes[key] = s
  return s
end
local function scope(key)
  return scopes[key] or scopeOf(key, redis.call('HMGET', key, unpack(SCOPE_FIELDS)), 1)
end
-- Limits are written only when they change (most calls find them as they were).
local function setLimits(s, lt, lu)
  if s.lt ~= lt or s.lu ~= lu then s.lt = lt; s.lu = lu; s.limitsDirty = true end
end
local function hold(s, t, u) s.rt = s.rt + t; s.ru = s.ru + (u or 0); s.n = s.n + 1; s.dirty = true end
local function unhold(s, t, u)
  s.n = s.n - 1; s.rt = s.rt - t; s.ru = s.ru - (u or 0)
  if s.n <= 0 then s.n = 0; s.rt = 0; s.ru = 0 end
  s.dirty = true
end
local function charge(s, t, u)
  s.c = s.c + 1; s.st = s.st + t
  if u == nil then s.ut = s.ut + t else s.su = s.su + u end
  s.dirty = true
end
local function avail(s, dim)
  if dim == 'tokens' then
    if s.lt == nil then return nil end
    return s.lt - s.st - s.rt
  end
  if s.lu == nil then return nil end
  return s.lu - s.su - s.ru
end
local expiries = {}
local function expireAt(key, at) expiries[key] = { 'at', at } end
local function expireIn(key, sec) expiries[key] = { 'in', sec } end
-- A day's scope expires at the day's expiry, set once: the scope keeps it as field x.
local function dayExpire(s, at)
  if s.x ~= at then s.x = at; s.xDirty = true; expireAt(s.key, at) end
end
-- What changed in each hash goes in one HSET (fewer calls inside the script: each costs Redis time).
local function saveAll()
  for key, s in pairs(scopes) do
    local f = {}
    local function add(name, v) f[#f + 1] = name; f[#f + 1] = v end
    if s.dirty then
      add('st', fmt(s.st)); add('su', fmt(s.su)); add('rt', fmt(s.rt)); add('ru', fmt(s.ru)); add('n', fmt(s.n)); add('c', fmt(s.c)); add('ut', fmt(s.ut))
    end
    if s.limitsDirty then
      if s.lt == nil then redis.call('HDEL', key, 'lt') else add('lt', fmt(s.lt)) end
      if s.lu == nil then redis.call('HDEL', key, 'lu') else add('lu', fmt(s.lu)) end
    end
    if s.xDirty then add('x', fmt(s.x)) end
    for name, v in pairs(s.put) do add(name, v) end
    if #f > 0 then redis.call('HSET', key, unpack(f)) end
  end
  for key, e in pairs(expiries) do
    if e[1] == 'at' then redis.call('EXPIRE', key, math.max(1, e[2] - NOW)) else redis.call('EXPIRE', key, e[2]) end
  end
  -- Written: a later step of the same call (budgetSteps) writes only what it changes itself.
  for _, s in pairs(scopes) do s.dirty = false; s.limitsDirty = false; s.xDirty = false; s.put = {} end
  for key in pairs(expiries) do expiries[key] = nil end
end

local function runKey(id) return B .. 'run:' .. id end
local runs = {}
-- A run's hash in one read: what it is, its scope, and what it spent itself (xt/xu/xut/xc).
local RUN_FIELDS = { 'agent', 'parent', 'open', 'lbt', 'lbu', 'label', 'adm', 'model', 'depth', 'root', 'tx', 'xt', 'xu', 'xut', 'xc', unpack(SCOPE_FIELDS) }
local function loadRun(id)
  local r = runs[id]
  if r then return r end
  local key = runKey(id)
  local h = redis.call('HMGET', key, unpack(RUN_FIELDS))
  if not h[1] then return nil end
  r = { id = id, agent = h[1], parent = (h[2] ~= '' and h[2]) or nil, open = h[3] == '1', lbt = h[4] == '1', lbu = h[5] == '1',
        label = h[6], adm = (h[7] ~= '' and h[7]) or nil, model = (h[8] ~= '' and h[8]) or nil, depth = tonumber(h[9]) or 0, root = h[10], tx = num(h[11]),
        xt = num(h[12]) or 0, xu = num(h[13]) or 0, xut = num(h[14]) or 0, xc = num(h[15]) or 0 }
  r.scope = scopes[key] or scopeOf(key, h, 16)
  runs[id] = r
  return r
end
-- The run and its ancestors, innermost first.
local function chainOf(r)
  local out = {}
  while r do
    out[#out + 1] = r
    if r.parent then r = loadRun(r.parent) else r = nil end
  end
  return out
end

local function dayKey(day, what) return B .. 'day:' .. day .. ':' .. what end
-- An agent's daily caps as stored ("<tokens>|<usd>"), read once per call.
local agentCaps = {}
local function setAgentLimits(agent, v)
  redis.call('HSET', B .. 'limits:agent', agent, v)
  agentCaps[agent] = v
end
local function agentLimits(agent)
  local v = agentCaps[agent]
  if v == nil then
    v = redis.call('HGET', B .. 'limits:agent', agent) or false
    agentCaps[agent] = v
  end
  if not v then return nil, nil end
  local sep = string.find(v, '|', 1, true)
  return num(string.sub(v, 1, sep - 1)), num(string.sub(v, sep + 1))
end
-- Agents already in a day's set in this call.
local listed = {}
-- The agent's and the server's window of a day, with their current limits (server: from the caller).
local function dayScopes(day, dx, agent, sLt, sLu)
  local a = scope(dayKey(day, 'agent:' .. agent))
  local alt, alu = agentLimits(agent)
  setLimits(a, alt, alu)
  local sv = scope(dayKey(day, 'server'))
  setLimits(sv, sLt, sLu)
  local set = dayKey(day, 'agents')
  if not listed[set .. '|' .. agent] then
    listed[set .. '|' .. agent] = true
    if redis.call('SADD', set, agent) == 1 then expireAt(set, dx) end
  end
  dayExpire(a, dx); dayExpire(sv, dx)
  return a, sv
end

-- Every limited scope a call of run r must fit in (checksFor in scope.ts).
local function checksFor(r, agentScope, serverScope, priced)
  local checks, skipped = {}, {}
  local function add(s, name, hintT, hintU)
    if s.lt ~= nil then checks[#checks + 1] = { s = s, dim = 'tokens', name = name, hint = hintT } end
    if s.lu ~= nil then
      if priced then checks[#checks + 1] = { s = s, dim = 'usd', name = name, hint = hintU } else skipped[#skipped + 1] = name end
    end
  end
  local parentId = r.parent
  for i, rs in ipairs(chainOf(r)) do
    local name = rs.label
    if i > 1 then name = rs.label .. ', ' .. ((rs.id == parentId) and 'parent' or 'ancestor') .. ' of ' .. r.id end
    local share = ''
    if rs.parent then share = " (its share of parent run " .. rs.parent .. "'s remaining budget)" end
    add(rs.scope, name, (rs.lbt and share) or '', (rs.lbu and share) or '')
  end
  add(agentScope, agentScope.label, '', '')
  add(serverScope, 'server daily', '', '')
  return checks, skipped
end
local function over(c, need) return need > avail(c.s, c.dim) + ((c.dim == 'usd') and EPS or 0) end

-- Reservations.
local function rsvKey(id) return B .. 'rsv:' .. id end
local rsvs = {}
local function loadRsv(id)
  local x = rsvs[id]
  if x then
    if x.gone then return nil end -- settled by an earlier step of the same call
    return x
  end
  local h = redis.call('HMGET', rsvKey(id), 'run', 'day', 'dx', 'agent', 'model', 'in', 'out', 't', 'u', 'pi', 'po', 'st')
  if not h[1] then return nil end
  x = { id = id, run = h[1], day = h[2], dx = tonumber(h[3]), agent = h[4], model = h[5], input = tonumber(h[6]), out = tonumber(h[7]),
        t = tonumber(h[8]), u = num(h[9]), pi = num(h[10]), po = num(h[11]), st = h[12] }
  rsvs[id] = x
  return x
end
local function saveRsv(x)
  redis.call('HSET', rsvKey(x.id), 'run', x.run, 'day', x.day, 'dx', fmt(x.dx), 'agent', x.agent, 'model', x.model, 'in', fmt(x.input),
    'out', fmt(x.out), 't', fmt(x.t), 'u', fmt(x.u), 'pi', fmt(x.pi), 'po', fmt(x.po), 'st', x.st)
end
-- The scopes a reservation is held in: its run and ancestors, its agent's and the server's window of its day.
local function rsvScopes(x)
  local out = {}
  for _, rs in ipairs(chainOf(loadRun(x.run))) do out[#out + 1] = rs.scope end
  out[#out + 1] = scope(dayKey(x.day, 'agent:' .. x.agent))
  out[#out + 1] = scope(dayKey(x.day, 'server'))
  return out
end
local function holdRsv(x) for _, s in ipairs(rsvScopes(x)) do hold(s, x.t, x.u) end end
local function unholdRsv(x) for _, s in ipairs(rsvScopes(x)) do unhold(s, x.t, x.u) end end
-- A new reservation: recorded (it expires with an open run's keys; settled, it is deleted), held in its
-- scopes, and in its run's set of open reservations.
local function openRsv(x, ttl)
  rsvs[x.id] = x
  saveRsv(x)
  expireIn(rsvKey(x.id), ttl)
  holdRsv(x)
  redis.call('SADD', runKey(x.run) .. ':rsv', x.id)
  expireIn(runKey(x.run) .. ':rsv', ttl)
end
-- Removes a reservation from every scope it is held in and forgets it; remembers how it ended
-- ('committed' or 'released') for \`keep\` seconds when asked to.
local function settle(x, how, keep)
  if x.st == 'open' then unholdRsv(x) end
  redis.call('SREM', runKey(x.run) .. ':rsv', x.id)
  redis.call('DEL', rsvKey(x.id))
  if keep then redis.call('SET', rsvKey(x.id) .. ':end', how, 'EX', keep) end
  x.gone = true
end

-- Runs attempt() with the run's admission hold given back to the scopes, then holds the admission
-- again, less what the attempt took (drawingOnAdmission in ledger.ts).
local function drawingOnAdmission(r, attempt)
  local adm = nil
  if r.adm then
    adm = loadRsv(r.adm)
    if adm and adm.st ~= 'open' then adm = nil end
  end
  if adm then unholdRsv(adm) end
  local result, takenT, takenU = attempt()
  if adm then
    if takenT then
      local t = math.min(adm.t, takenT)
      adm.t = adm.t - t
      adm.out = adm.t
      if adm.u ~= nil then adm.u = math.max(0, adm.u - (takenU or 0)) end
      saveRsv(adm)
    end
    holdRsv(adm)
  end
  return result
end

local function refusal(blockers)
  local out = { 'refused' }
  for _, c in ipairs(blockers) do
    local s = c.s
    local spent, reserved = s.st, s.rt
    if c.dim == 'usd' then spent, reserved = s.su, s.ru end
    out[#out + 1] = { c.name, c.hint, c.dim, fmt(c.dim == 'tokens' and s.lt or s.lu), fmt(spent), fmt(reserved) }
  end
  return out
end

local function largestFitting(lo, hi, fits)
  while hi - lo > 1 do
    local mid = math.floor((lo + hi) / 2)
    if fits(mid) then lo = mid else hi = mid end
  end
  return lo
end

local function openRunOrFail(id)
  local r = loadRun(id)
  if not r then return nil, 'budget: unknown run ' .. id .. ' (openRun it first)' end
  if not r.open then return nil, 'budget: run ' .. id .. ' is closed' end
  return r
end
-- A run's keys live ttl after it was last touched. An open run is touched again only once half of that
-- has gone (field tx: when); its sub-keys made in between get their expiry as they are made (subKeyMade,
-- openRsv).
-- \`keys\`: the suffixes of the run's keys that may exist (default: all of them).
local ALL_RUN_KEYS = { '', ':rsv', ':children', ':models' }
local function touchRun(r, ttl, force, keys)
  if not force and r.tx ~= nil and NOW - r.tx < ttl / 2 then return end
  for _, suffix in ipairs(keys or ALL_RUN_KEYS) do expireIn(runKey(r.id) .. suffix, ttl) end
  if r.tx ~= NOW then r.tx = NOW; r.scope.put.tx = fmt(NOW) end
end
-- A run's sub-key just made: it expires with the run's own key (or in ttl, if that key has no expiry).
local function subKeyMade(r, key, ttl)
  local left = redis.call('TTL', runKey(r.id))
  if left > 0 then redis.call('EXPIRE', key, left) else redis.call('EXPIRE', key, ttl) end
end
local function touchChain(r, ttl) for _, rs in ipairs(chainOf(r)) do touchRun(rs, ttl) end end
`;

/** openRun: ARGV runId, agent, parentId|'', day, dayExpireAt, runTtl, own lt|'', own lu|'', agent daily lt|'', lu|'', label. */
const OPEN_RUN = `
local id, agent, parentId, day, dx, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local lt, lu = num(ARGV[7]), num(ARGV[8])
if redis.call('EXISTS', runKey(id)) == 1 then return redis.error_reply('budget: run ' .. id .. ' was already opened') end
local parent = nil
if parentId ~= '' then
  parent = loadRun(parentId)
  if not parent then return redis.error_reply('budget: run ' .. id .. ' names unknown parent run ' .. parentId) end
  if not parent.open then return redis.error_reply('budget: run ' .. id .. ' cannot start under closed parent run ' .. parentId) end
end
local lbt, lbu = '0', '0'
if parent then
  for _, dim in ipairs({ 'tokens', 'usd' }) do
    local left = nil
    for _, rs in ipairs(chainOf(parent)) do
      local a = avail(rs.scope, dim)
      if a ~= nil then
        if left == nil then left = a else left = math.min(left, a) end
        left = math.max(0, left)
      end
    end
    if dim == 'tokens' and left ~= nil and (lt == nil or left < lt) then lt = left; lbt = '1' end
    if dim == 'usd' and left ~= nil and (lu == nil or left < lu) then lu = roundUsd(left); lbu = '1' end
  end
end
setAgentLimits(agent, ARGV[9] .. '|' .. ARGV[10])
dayScopes(day, dx, agent, nil, nil)
local key = runKey(id)
local root, depth = parent and parent.root or id, parent and parent.depth + 1 or 0
-- Written whole (tx: touched now) and known as written: nothing is read back.
local fields = { 'agent', agent, 'parent', parentId, 'root', root, 'depth', fmt(depth), 'open', '1', 'lbt', lbt, 'lbu', lbu, 'label', ARGV[11], 'adm', '', 'model', '',
  'st', '0', 'su', '0', 'rt', '0', 'ru', '0', 'n', '0', 'c', '0', 'ut', '0', 'xt', '0', 'xu', '0', 'xut', '0', 'xc', '0', 'tx', fmt(NOW) }
if lt ~= nil then fields[#fields + 1] = 'lt'; fields[#fields + 1] = fmt(lt) end
if lu ~= nil then fields[#fields + 1] = 'lu'; fields[#fields + 1] = fmt(lu) end
redis.call('HSET', key, unpack(fields))
if parent then
  if redis.call('RPUSH', runKey(parentId) .. ':children', id) == 1 then subKeyMade(parent, runKey(parentId) .. ':children', ttl) end
  touchChain(parent, ttl)
end
redis.call('INCR', B .. 'open-runs')
local r = { id = id, agent = agent, parent = parent and parentId or nil, open = true, lbt = lbt == '1', lbu = lbu == '1', label = ARGV[11], depth = depth, root = root,
            tx = NOW, xt = 0, xu = 0, xut = 0, xc = 0 }
r.scope = scopeOf(key, { fmt(lt), fmt(lu) }, 1)
runs[id] = r
-- Its other keys do not exist yet: each gets the run's expiry when it is made (subKeyMade, openRsv).
expireIn(key, ttl)
-- the agent scope's limits are the stored ones: do not let saveAll rewrite the server's
scopes[dayKey(day, 'server')].limitsDirty = false
saveAll()
return { fmt(lt), fmt(lu), lbt, lbu }
`;

/**
 * reserve: ARGV runId, rsvId, day, dayExpireAt, model, input, maxOut, minOut, slice|'', pi|'', po|'',
 * server lt|'', lu|'', runTtl.
 */
const RESERVE = `
local id, rid, day, dx, model = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local input, maxOut, minOut, slice = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), num(ARGV[9])
local pi, po = num(ARGV[10]), num(ARGV[11])
local ttl = tonumber(ARGV[14])
local r, err = openRunOrFail(id)
if not r then return redis.error_reply(err) end
local agentScope, serverScope = dayScopes(day, dx, r.agent, num(ARGV[12]), num(ARGV[13]))
agentScope.label = 'agent ' .. r.agent .. ' daily'
local priced = pi ~= nil
local function need(dim, out) if dim == 'tokens' then return input + out end return (input * pi + out * po) / 1e6 end
local result = drawingOnAdmission(r, function()
  local checks, skipped = checksFor(r, agentScope, serverScope, priced)
  local function failing(out)
    local f = {}
    for _, c in ipairs(checks) do if over(c, need(c.dim, out)) then f[#f + 1] = c end end
    return f
  end
  local function fitsAll(out) return #failing(out) == 0 end
  local held, providerMax, shrunk
  if slice ~= nil then
    local want = math.min(slice, maxOut)
    if not fitsAll(want) then
      local blockers = failing(math.min(1, want))
      if #blockers > 0 then return refusal(blockers) end
      held = largestFitting(math.min(1, want), want, fitsAll)
    else held = want end
    providerMax, shrunk = maxOut, false
  else
    local granted = maxOut
    if not fitsAll(maxOut) then
      local blockers = failing(minOut)
      if #blockers > 0 then return refusal(blockers) end
      granted = largestFitting(minOut, maxOut, fitsAll)
    end
    held, providerMax, shrunk = granted, granted, granted < maxOut
  end
  local t = input + held
  local u = nil
  if priced then u = need('usd', held) end
  local x = { id = rid, run = id, day = day, dx = dx, agent = r.agent, model = model, input = input, out = held, t = t, u = u, pi = pi, po = po, st = 'open' }
  openRsv(x, ttl)
  if not r.model then r.scope.put.model = model; r.model = model end
  return { 'ok', fmt(providerMax), fmt(held), shrunk and '1' or '0', fmt(t), fmt(u), table.concat(skipped, '; ') }, t, u
end)
touchChain(r, ttl)
saveAll()
return result
`;

/** admit: ARGV runId, rsvId, day, dayExpireAt, model, tokens, usd|'', pi|'', po|'', server lt|'', lu|'', runTtl. */
const ADMIT = `
local id, rid, day, dx, model = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local pi, po = num(ARGV[8]), num(ARGV[9])
local ttl = tonumber(ARGV[12])
local r, err = openRunOrFail(id)
if not r then return redis.error_reply(err) end
if r.adm then return redis.error_reply('budget: run ' .. id .. ' was already admitted') end
local agentScope, serverScope = dayScopes(day, dx, r.agent, num(ARGV[10]), num(ARGV[11]))
agentScope.label = 'agent ' .. r.agent .. ' daily'
-- A run never spends more than its own caps allow: expecting more would refuse it for nothing.
local tokens = tonumber(ARGV[6])
if r.scope.lt ~= nil then tokens = math.min(tokens, r.scope.lt) end
local usd = num(ARGV[7])
if usd == nil and pi ~= nil then usd = tokens * po / 1e6 end
if usd ~= nil and r.scope.lu ~= nil then usd = math.min(usd, r.scope.lu) end
local checks = checksFor(r, agentScope, serverScope, pi ~= nil)
local blockers = {}
for _, c in ipairs(checks) do
  local need = (c.dim == 'tokens') and tokens or (usd or 0)
  if over(c, need) then blockers[#blockers + 1] = c end
end
if #blockers > 0 then
  local out = refusal(blockers)
  out[#out + 1] = { fmt(tokens), fmt(usd) }
  return out
end
local x = { id = rid, run = id, day = day, dx = dx, agent = r.agent, model = model, input = 0, out = tokens, t = tokens, u = usd, pi = pi, po = po, st = 'open' }
openRsv(x, ttl)
redis.call('HSET', runKey(id), 'adm', rid)
r.adm = rid
touchChain(r, ttl)
saveAll()
return { 'ok' }
`;

/** extend: ARGV rsvId, want, server lt|'', lu|'', runTtl. */
const EXTEND = `
local rid, want, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[5])
local x = loadRsv(rid)
if not x or x.st ~= 'open' then return redis.error_reply('budget: extend of unknown or settled reservation ' .. rid) end
local r = loadRun(x.run)
local agentScope, serverScope = dayScopes(x.day, x.dx, x.agent, num(ARGV[3]), num(ARGV[4]))
agentScope.label = 'agent ' .. x.agent .. ' daily'
local priced = x.pi ~= nil
local function need(dim, out) if dim == 'tokens' then return out end return (out * x.po) / 1e6 end
local result = drawingOnAdmission(r, function()
  local checks = checksFor(r, agentScope, serverScope, priced)
  local function fits(out)
    for _, c in ipairs(checks) do if over(c, need(c.dim, out)) then return false end end
    return true
  end
  if not fits(1) then
    local blockers = {}
    for _, c in ipairs(checks) do if over(c, need(c.dim, 1)) then blockers[#blockers + 1] = c end end
    return refusal(blockers)
  end
  local lo = want
  if not fits(want) then lo = largestFitting(1, want, fits) end
  local u = nil
  if priced then u = need('usd', lo) end
  unholdRsv(x)
  x.out = x.out + lo
  x.t = x.t + lo
  if x.u ~= nil and u ~= nil then x.u = x.u + u end
  holdRsv(x)
  saveRsv(x)
  return { 'ok', fmt(lo), fmt(x.out) }, lo, u
end)
touchChain(r, ttl)
saveAll()
return result
`;

const ADD_MODEL = `
-- A model's counters in a hash of "<model>\\n<field>" fields: read together, written together.
local function addModel(key, model, t, u, parts)
  local p = model .. '\\n'
  local h = redis.call('HMGET', key, p .. 'calls', p .. 'tokens', p .. 'usd', p .. 'input', p .. 'output', p .. 'cache_read', p .. 'cache_write')
  local calls = (num(h[1]) or 0) + 1
  local f = { p .. 'calls', fmt(calls), p .. 'tokens', fmt((num(h[2]) or 0) + t),
              p .. 'input', fmt((num(h[4]) or 0) + parts[1]), p .. 'output', fmt((num(h[5]) or 0) + parts[2]),
              p .. 'cache_read', fmt((num(h[6]) or 0) + parts[3]), p .. 'cache_write', fmt((num(h[7]) or 0) + parts[4]) }
  if u ~= nil then f[#f + 1] = p .. 'usd'; f[#f + 1] = fmt((num(h[3]) or 0) + u) end
  redis.call('HSET', key, unpack(f))
  return calls
end
`;

/**
 * What a call spent, charged to its run's chain (when the run's records are still there: a charge after
 * closeRun, even after they expired, still counts for the day) and to the day's agent and server scopes.
 * x: { run, day, dx, agent, model }.
 */
const SPEND = `
local function spend(x, t, u, parts, ttl)
  local r = loadRun(x.run)
  if r then
    for _, rs in ipairs(chainOf(r)) do
      charge(rs.scope, t, u)
      if addModel(runKey(rs.id) .. ':models', x.model, t, u, parts) == 1 then subKeyMade(rs, runKey(rs.id) .. ':models', ttl) end
    end
    r.xt = r.xt + t; r.xc = r.xc + 1
    if u == nil then r.xut = r.xut + t else r.xu = r.xu + u end
    local put = r.scope.put
    put.xt = fmt(r.xt); put.xu = fmt(r.xu); put.xut = fmt(r.xut); put.xc = fmt(r.xc)
    if r.open then touchChain(r, ttl) end
  end
  local a, sv = scope(dayKey(x.day, 'agent:' .. x.agent)), scope(dayKey(x.day, 'server'))
  charge(a, t, u)
  charge(sv, t, u)
  local mk = dayKey(x.day, 'models')
  if addModel(mk, x.model, t, u, parts) == 1 then expireAt(mk, x.dx) end
  dayExpire(a, x.dx); dayExpire(sv, x.dx)
end
`;

/** commit: ARGV rsvId, tokens, usd|'', input, output, cache_read, cache_write, runTtl, keepEnd|'' (settle). */
const COMMIT = `${ADD_MODEL}${SPEND}
local rid = ARGV[1]
local t, u = tonumber(ARGV[2]), num(ARGV[3])
local parts = { tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]) }
local ttl = tonumber(ARGV[8])
local x = loadRsv(rid)
if not x then return redis.error_reply('budget: commit of unknown or already settled reservation ' .. rid) end
settle(x, 'committed', num(ARGV[9]))
spend(x, t, u, parts, ttl)
saveAll()
return 1
`;

/**
 * charge: ARGV runId, agent, model, day, dayExpireAt, tokens, usd, input, output, cacheRead, cacheWrite,
 * runTtl. What a run spent with no reservation left to commit it to (a queue worker whose run was given
 * up as lost while it went on: its front released the slice), counted whatever the caps: it was spent.
 */
const CHARGE = `${ADD_MODEL}${SPEND}
local x = { run = ARGV[1], agent = ARGV[2], model = ARGV[3], day = ARGV[4], dx = tonumber(ARGV[5]) }
spend(x, tonumber(ARGV[6]), num(ARGV[7]), { tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]) }, tonumber(ARGV[12]))
saveAll()
return 1
`;

/** release: ARGV rsvId, keepEnd|'' (settle). Idempotent. */
const RELEASE = `
local x = loadRsv(ARGV[1])
if x then settle(x, 'released', num(ARGV[2])); saveAll() end
return 1
`;

const TOTALS = `
local function totals(r)
  return { r.id, r.agent, fmt(r.scope.st), fmt(r.scope.su), fmt(r.scope.ut), fmt(r.scope.c), fmt(r.xt), fmt(r.xu), fmt(r.xut), fmt(r.xc),
    redis.call('HGETALL', runKey(r.id) .. ':models') }
end
`;

/** closeRun: ARGV runId, closedTtl. Returns totals and, per run closed now, its history entry. */
const CLOSE_RUN = `${TOTALS}
local id, closedTtl = ARGV[1], tonumber(ARGV[2])
local run = loadRun(id)
if not run then return redis.error_reply('budget: closeRun of unknown run ' .. id) end
local closed = {}
local function closeTree(r)
  local children = redis.call('LRANGE', runKey(r.id) .. ':children', 0, -1)
  for _, child in ipairs(children) do closeTree(loadRun(child) or { id = child, open = false }) end
  if not r.open then return end
  -- What is left of the admission hold goes back at once: nothing will ever commit to it.
  if r.adm then
    local adm = loadRsv(r.adm)
    if adm then settle(adm) end
  end
  for _, rid in ipairs(redis.call('SMEMBERS', runKey(r.id) .. ':rsv')) do
    local x = loadRsv(rid)
    if x and x.st == 'open' then
      unholdRsv(x)
      x.st = 'orphaned'
      redis.call('HSET', rsvKey(rid), 'st', 'orphaned')
      redis.call('EXPIRE', rsvKey(rid), closedTtl)
    end
    redis.call('SREM', runKey(r.id) .. ':rsv', rid)
  end
  r.scope.put.open = '0'
  r.open = false
  redis.call('DECR', B .. 'open-runs')
  closed[#closed + 1] = { r.agent, r.model or '', fmt(r.xt), fmt(r.xu), fmt(r.xut), fmt(r.xc) }
  -- Its set of reservations is empty now (gone); a list of children exists only if it has some.
  touchRun(r, closedTtl, true, #children > 0 and { '', ':children', ':models' } or { '', ':models' })
end
if run.open then closeTree(run) end
saveAll()
return { totals(run), closed }
`;

/** runTotals: ARGV runId. */
const RUN_TOTALS = `${TOTALS}
local run = loadRun(ARGV[1])
if not run then return redis.error_reply('budget: unknown run ' .. ARGV[1]) end
return totals(run)
`;

/** status: ARGV day, runId|'', server lt|'', lu|''. One consistent snapshot of a day's books (and a run's subtree). */
const STATUS = `
local day, id = ARGV[1], ARGV[2]
local function fields(key) return redis.call('HMGET', key, 'lt', 'lu', 'st', 'su', 'rt', 'ru', 'n', 'c', 'ut') end
local server = fields(dayKey(day, 'server'))
server[1], server[2] = ARGV[3], ARGV[4]
local names = {}
for _, a in ipairs(redis.call('SMEMBERS', dayKey(day, 'agents'))) do names[a] = true end
local lim = redis.call('HGETALL', B .. 'limits:agent')
for i = 1, #lim, 2 do if lim[i + 1] ~= '|' then names[lim[i]] = true end end
local agents = {}
for a, _ in pairs(names) do
  local f = fields(dayKey(day, 'agent:' .. a))
  local lt, lu = agentLimits(a)
  f[1], f[2] = fmt(lt), fmt(lu)
  agents[#agents + 1] = { a, f }
end
local runsOut = {}
if id ~= '' then
  if redis.call('EXISTS', runKey(id)) == 0 then return redis.error_reply('budget: unknown run ' .. id) end
  local function walk(rid)
    local key = runKey(rid)
    if redis.call('EXISTS', key) == 0 then return end
    local h = redis.call('HMGET', key, 'agent', 'parent', 'depth', 'open', 'lbt', 'lbu', 'xt', 'xu', 'xut', 'xc')
    local rt, ru = 0, 0
    for _, x in ipairs(redis.call('SMEMBERS', key .. ':rsv')) do
      local v = redis.call('HMGET', rsvKey(x), 't', 'u')
      rt = rt + (num(v[1]) or 0); ru = ru + (num(v[2]) or 0)
    end
    local children = redis.call('LRANGE', key .. ':children', 0, -1)
    runsOut[#runsOut + 1] = { rid, h, fields(key), fmt(rt), fmt(ru), redis.call('HGETALL', key .. ':models'), children }
    for _, c in ipairs(children) do walk(c) end
  end
  walk(id)
end
return { server, agents, redis.call('HGETALL', dayKey(day, 'models')), runsOut, redis.call('GET', B .. 'open-runs') or '0' }
`;

export const LEDGER_SCRIPTS = {
  budgetOpenRun: OPEN_RUN,
  budgetReserve: RESERVE,
  budgetAdmit: ADMIT,
  budgetExtend: EXTEND,
  budgetCommit: COMMIT,
  budgetCharge: CHARGE,
  budgetRelease: RELEASE,
  budgetCloseRun: CLOSE_RUN,
  budgetRunTotals: RUN_TOTALS,
  budgetStatus: STATUS,
} as const;

/** Each script with the shared helpers in front (one key: the base). */
export function ledgerScript(name: keyof typeof LEDGER_SCRIPTS): string {
  return PRELUDE + LEDGER_SCRIPTS[name];
}

/** The steps budgetSteps can run: every script but the day's status report (it reads the whole books). */
export type StepScript = Exclude<keyof typeof LEDGER_SCRIPTS, 'budgetStatus'>;
const STEP_SCRIPTS = (Object.keys(LEDGER_SCRIPTS) as (keyof typeof LEDGER_SCRIPTS)[]).filter((n): n is StepScript => n !== 'budgetStatus');
/** A step's error in budgetSteps' reply: [STEP_ERROR, message] (kept apart from the other steps' replies). */
export const STEP_ERROR = '!budget-step-error';

/**
 * budgetSteps: ARGV (name, argc, args…)… clock. Several calls in one script, in order, each exactly as
 * its own script would run it (the same code, as a function whose ARGV is its own arguments): a burst of
 * runs (a delegate_parallel batch opening and reserving, then settling) is one command and one round
 * trip instead of one per call. Each step's reply, or STEP_ERROR and its message, in the reply's array.
 */
export function stepsScript(): string {
  const steps = STEP_SCRIPTS.map((name) => `STEPS['${name}'] = function(ARGV)\n${LEDGER_SCRIPTS[name]}\nend`).join('\n');
  return `${PRELUDE}
local STEPS = {}
${steps}
local out = {}
local i, last = 1, #ARGV - 1
while i <= last do
  local name, argc = ARGV[i], tonumber(ARGV[i + 1])
  local a = {}
  for k = 1, argc do a[k] = ARGV[i + 1 + k] end
  a[argc + 1] = ARGV[#ARGV]
  local ok, res = pcall(STEPS[name], a)
  if not ok then
    -- A step that fails midway fails alone, as its own script would: what it had read or changed in
    -- memory is forgotten, so the steps after it start from what Redis holds.
    res = { '${STEP_ERROR}', 'budget: Redis ledger unavailable (' .. tostring(type(res) == 'table' and res.err or res) .. ')' }
    for k in pairs(scopes) do scopes[k] = nil end
    for k in pairs(runs) do runs[k] = nil end
    for k in pairs(rsvs) do rsvs[k] = nil end
    for k in pairs(expiries) do expiries[k] = nil end
    for k in pairs(agentCaps) do agentCaps[k] = nil end
    for k in pairs(listed) do listed[k] = nil end
  elseif type(res) == 'table' and res.err then res = { '${STEP_ERROR}', res.err } end
  out[#out + 1] = res
  i = i + 2 + argc
end
return out
`;
}
