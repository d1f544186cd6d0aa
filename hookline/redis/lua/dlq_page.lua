-- dlq_page: one page of a filtered walk over the dead letters, found server-side
-- (hookline/dlq/search.py). Walks one time-of-death index inside the time bounds, from
-- a cursor, checks the remaining criteria on each entry's short search text (never the
-- whole entry) and returns only the matches.
--
-- KEYS[1]   the index to walk (keys.dlq_index, dlq_source_index or dlq_type_index)
-- KEYS[2]   the search-text hash (keys.dlq_search)
-- ARGV[1]   min time of death          ARGV[2]   max time of death
-- ARGV[3]   cursor score ('' none)     ARGV[4]   cursor id
-- ARGV[5]   how many to find           ARGV[6]   most entries to pass over
-- ARGV[7]   newest first (1/0)         ARGV[8]   source to check ('' none)
-- ARGV[9]   glob the type must match ('' none)
-- ARGV[10]  error needle (lower-case, '' none)
-- ARGV[11]  entry key prefix (keys.dlq_entry(''))
-- ARGV[12]  return ids (1) or entries (0)
--
-- Returns {more (1/0), last score, last id, entries passed over, found...}.
-- Guarantees: at most ARGV[6] entries are passed over, and a glob costs at most
-- #glob * #text steps whatever it is (the same answers as search.glob_match); entries
-- tied with the cursor's score are not returned twice.
local lo, hi, cs, cm = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local want, budget = tonumber(ARGV[5]), tonumber(ARGV[6])
local rev, src, typ, needle = ARGV[7] == '1', ARGV[8], ARGV[9], ARGV[10]
local prefix, ids_only = ARGV[11], ARGV[12] == '1'
local check = src ~= '' or typ ~= '' or needle ~= ''
local csn = tonumber(cs)
-- the byte after the UTF-8 character that starts at byte i of s
local function after_char(s, i)
  i = i + 1
  local b = string.byte(s, i)
  while b and b >= 128 and b < 192 do
    i = i + 1
    b = string.byte(s, i)
  end
  return i
end
-- glob_match in Python, byte-wise with ? one UTF-8 character: one backtrack point (the
-- last *), so never more than #glob * #text steps, whatever the glob
local function glob(g, s)
  local gi, si, star, mark = 1, 1, nil, 1
  while si <= #s do
    local c = string.byte(g, gi)
    if c == 42 then
      star, mark, gi = gi, si, gi + 1
    elseif c == 63 then
      gi, si = gi + 1, after_char(s, si)
    elseif c ~= nil and c == string.byte(s, si) then
      gi, si = gi + 1, si + 1
    elseif star then
      mark = after_char(s, mark)
      gi, si = star + 1, mark
    else
      return false
    end
  end
  while string.byte(g, gi) == 42 do gi = gi + 1 end
  return gi > #g
end
-- a glob without ?: its pieces between the *s, found in order by plain search (in C)
local pieces = nil
if typ ~= '' and not string.find(typ, '?', 1, true) then
  pieces = {}
  local from = 1
  while true do
    local at = string.find(typ, '*', from, true)
    if not at then break end
    pieces[#pieces + 1] = string.sub(typ, from, at - 1)
    from = at + 1
  end
  pieces[#pieces + 1] = string.sub(typ, from)
end
local function type_ok(s)
  if not pieces then return glob(typ, s) end
  local first, last = pieces[1], pieces[#pieces]
  if #pieces == 1 then return s == first end
  if #first + #last > #s or string.sub(s, 1, #first) ~= first
    or string.sub(s, #s - #last + 1) ~= last then return false end
  -- the leftmost place of each piece leaves the most room for the rest
  local pos, stop = #first + 1, #s - #last
  for k = 2, #pieces - 1 do
    local i, j = string.find(s, pieces[k], pos, true)
    if not i or j > stop then return false end
    pos = j + 1
  end
  return true
end
-- the search text: source, type, error type, message (both lower-case), byte 31 between
local function matches(id)
  if not check then return true end
  local text = redis.call('HGET', KEYS[2], id)
  if not text then return false end
  local a = string.find(text, '\31', 1, true)
  local b = string.find(text, '\31', a + 1, true)
  local c = string.find(text, '\31', b + 1, true)
  if src ~= '' and string.sub(text, 1, a - 1) ~= src then return false end
  if typ ~= '' and not type_ok(string.sub(text, a + 1, b - 1)) then return false end
  if needle == '' then return true end
  return string.find(string.sub(text, b + 1, c - 1), needle, 1, true) ~= nil
    or string.find(text, needle, c + 1, true) ~= nil
end
local start = cs
if cs == '' then start = rev and hi or lo end
local out, found, scanned, offset = {0, '', '', 0}, 0, 0, 0
while true do
  local got
  if rev then
    got = redis.call('ZREVRANGEBYSCORE', KEYS[1], start, lo, 'WITHSCORES', 'LIMIT', offset, 200)
  else
    got = redis.call('ZRANGEBYSCORE', KEYS[1], start, hi, 'WITHSCORES', 'LIMIT', offset, 200)
  end
  if #got == 0 then
    out[4] = scanned
    return out
  end
  offset = offset + #got / 2
  for i = 1, #got, 2 do
    local id, score = got[i], got[i + 1]
    -- entries tied with the cursor's score come in id order: skip those already passed
    local tied = csn ~= nil and tonumber(score) == csn
    if not tied or (rev and id < cm) or (not rev and id > cm) then
      scanned = scanned + 1
      if matches(id) then
        local item = id
        if not ids_only then item = redis.call('GET', prefix .. id) end
        if item then
          found = found + 1
          out[#out + 1] = item
        end
      end
      if found >= want or scanned >= budget then
        out[1], out[2], out[3], out[4] = 1, score, id, scanned
        return out
      end
    end
  end
end
