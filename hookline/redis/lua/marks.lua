-- Fragment: the compact dedupe and done marks. Included (`-- @include marks.lua`) by the
-- scripts that read or write an event's mark; hookline/redis/marks.py holds the Python
-- side (how an event id becomes a shard number and a field).
--
-- One source's marks live in small hashes, one set per time bucket, expired as a whole.
-- The marks' window is the longer of the source's dedupe window and the 3 days a done
-- mark is kept (marks.marks_window). A bucket lasts half of it (span = ceil(window / 2)
-- ms); bucket b holds the events first marked in [b*span, (b+1)*span) and expires at
-- (b+1)*span + window, so a mark is kept at least the window and at most one bucket
-- longer. A lookup reads the buckets that can hold a mark younger than what it asks
-- (`within`, at most the window): the 3 of the window, fewer for a shorter one. (More,
-- shorter buckets keep marks closer to the window but cost a lookup each.)
--
-- A bucket is split into sub-hashes so that each stays under Redis's listpack limit
-- (128 entries), where a mark costs about 20 bytes instead of a key of its own. A
-- bucket opens with S sub-hashes (a power of two: its predecessor's count / 64, so 64
-- marks each on average); when its generations hold 64 marks per sub-hash (a burst, or
-- the first bucket of a busy source), a new generation of 4 times as many takes the
-- new marks, and lookups read every generation (rarely more than one). An event's sub-hash is its shard number mod S; its field is
-- 12 bytes of the digest of its id; the value is its state: 1 seen (enqueued), 2 done.
--
-- Keys: the source's meta hash `meta` (keys.marks) is passed in; a sub-hash is
-- `meta .. ':' .. span .. ':' .. b .. ':' .. generation .. ':' .. (shard % S)`
-- (keys.marks_bucket builds the same name), in the slot of `meta` wherever its name has a
-- hash tag. The meta hash holds `span:b:s` (the bucket's S per generation, as "S1,S2")
-- and `span:b:n` (marks written in it).
--
-- marks_find(meta, window, within, shard, field) -> state, sub-hash key, bucket (nil: none)
-- marks_set(meta, window, shard, field, state[, key])  key: where marks_find found it
-- marks_flush()  writes the counts gathered by marks_set: call once, at the end
-- Inside: marks_layout(meta, window) reads the buckets' sizes once per script call,
-- marks_sizes(text) parses them, marks_key(meta, layout, bucket, generation, shard)
-- names a sub-hash, marks_grow(meta, window, layout) opens or grows the current bucket.
local MARKS_BUCKETS, MARKS_PER_HASH, MARKS_GROWTH = 2, 64, 4
local MARKS_MOST = 1048576
local marks_time = redis.call('TIME')
local marks_now = tonumber(marks_time[1]) * 1000 + math.floor(tonumber(marks_time[2]) / 1000)
local marks_layouts, marks_counts, marks_expiry = {}, {}, {}

local function marks_sizes(text)
  local sizes = {}
  for size in string.gmatch(text, '%d+') do sizes[#sizes + 1] = tonumber(size) end
  return sizes
end

local function marks_layout(meta, window)
  local name = meta .. '|' .. window
  local cached = marks_layouts[name]
  if cached then return cached end
  local span = math.ceil(window / MARKS_BUCKETS)
  local current = math.floor(marks_now / span)
  local fields = {span .. ':' .. current .. ':n'}
  for b = current - MARKS_BUCKETS, current do fields[#fields + 1] = span .. ':' .. b .. ':s' end
  local values = redis.call('HMGET', meta, unpack(fields))
  local layout = {meta = meta, name = name, span = span, current = current, gens = {},
                  prefixes = {}, count = tonumber(values[1] or '0')}
  for i = 2, #values do
    if values[i] then layout.gens[current - MARKS_BUCKETS + i - 2] = marks_sizes(values[i]) end
  end
  marks_layouts[name] = layout
  return layout
end

local function marks_key(meta, layout, bucket, generation, shard)
  local prefixes = layout.prefixes[bucket]
  if not prefixes then
    prefixes = {}
    layout.prefixes[bucket] = prefixes
  end
  local prefix = prefixes[generation]
  if not prefix then
    prefix = meta .. ':' .. layout.span .. ':' .. bucket .. ':' .. generation .. ':'
    prefixes[generation] = prefix
  end
  return prefix .. (shard % layout.gens[bucket][generation])
end

local function marks_find(meta, window, within, shard, field)
  local layout = marks_layout(meta, window)
  local oldest = math.max(layout.current - MARKS_BUCKETS, math.floor((marks_now - within) / layout.span))
  for b = layout.current, oldest, -1 do
    local gens = layout.gens[b]
    if gens then
      for g = #gens, 1, -1 do
        local key = marks_key(meta, layout, b, g, shard)
        local state = redis.call('HGET', key, field)
        if state then return state, key, b end
      end
    end
  end
  return nil, nil, nil
end

-- Give the current bucket a generation of sub-hashes fit for its count so far (opening
-- the bucket, sized from its predecessor's count, when it has none).
local function marks_grow(meta, window, layout)
  local span, current = layout.span, layout.current
  local gens = layout.gens[current]
  if gens then
    local room = 0
    for _, size in ipairs(gens) do room = room + size * MARKS_PER_HASH end
    if layout.count < room then return end
  end
  if gens then
    if gens[#gens] >= MARKS_MOST then return end
    gens[#gens + 1] = gens[#gens] * MARKS_GROWTH
  else
    local before = tonumber(redis.call('HGET', meta, span .. ':' .. (current - 1) .. ':n') or '0')
    local size = 1
    while size * MARKS_PER_HASH < before and size < MARKS_MOST do size = size * 2 end
    gens = {size}
    layout.gens[current] = gens
    -- The fields of buckets no lookup reaches any more (or of another window) go.
    local stale = {}
    for _, name in ipairs(redis.call('HKEYS', meta)) do
      local s, b = string.match(name, '^(%d+):(-?%d+):')
      if tonumber(s) ~= span or tonumber(b) < current - MARKS_BUCKETS - 1 then
        stale[#stale + 1] = name
      end
    end
    if #stale > 0 then redis.call('HDEL', meta, unpack(stale)) end
    redis.call('PEXPIRE', meta, window + 2 * span)
  end
  redis.call('HSET', meta, span .. ':' .. current .. ':s', table.concat(gens, ','))
end

local function marks_set(meta, window, shard, field, state, key)
  local layout = marks_layout(meta, window)
  if key then
    redis.call('HSET', key, field, state)
    return
  end
  marks_grow(meta, window, layout)
  local current = layout.current
  key = marks_key(meta, layout, current, #layout.gens[current], shard)
  if redis.call('HSET', key, field, state) == 1 then
    if not marks_expiry[key] then
      redis.call('PEXPIREAT', key, (current + 1) * layout.span + window)
      marks_expiry[key] = true
    end
    layout.count = layout.count + 1
    marks_counts[layout.name] = (marks_counts[layout.name] or 0) + 1
  end
end

local function marks_flush()
  for name, n in pairs(marks_counts) do
    local layout = marks_layouts[name]
    redis.call('HINCRBY', layout.meta, layout.span .. ':' .. layout.current .. ':n', n)
  end
  marks_counts = {}
end
