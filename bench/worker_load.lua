-- wrk script: POST pre-signed Stripe events at a steady rate (the worker benchmark's load).
--
-- Usage: wrk -t1 -cC -dD -s worker_load.lua URL -- POOL_DIR RATE
-- POOL_DIR is a pool written by bench/pool.py (head.bin, tail.bin, thread-N.txt), as
-- pool.lua reads it. RATE is requests/s for each wrk thread. Request k of a thread is
-- due at start + k / RATE whatever became of the earlier ones (open loop, as long as a
-- connection is free): delay() waits for the slot, or not at all when it has passed.
-- done() prints "BENCH_RESULT {json}" with pool.lua's fields, plus "late": requests
-- sent more than 5 ms after their slot (the load was not open loop for those).

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock) -- CLOCK_MONOTONIC
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) / 1e9
end

local threads, count = {}, 0

function setup(thread)
  count = count + 1
  thread:set("tid", count)
  table.insert(threads, thread)
end

local function slurp(path)
  local file = assert(io.open(path, "rb"))
  local data = file:read("*a")
  file:close()
  return data
end

local head, tail, pool, interval, start, slot
local headers = {
  ["Content-Type"] = "application/json; charset=utf-8",
  ["User-Agent"] = "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
}

function init(args)
  head = slurp(args[1] .. "/head.bin")
  tail = slurp(args[1] .. "/tail.bin")
  pool = assert(io.open(args[1] .. "/thread-" .. tid .. ".txt", "rb"))
  interval = 1 / tonumber(args[2])
  slot = 0
  -- Globals, so that done() can read them with thread:get().
  sent, exhausted, late = 0, 0, 0
end

function delay()
  local t = now()
  start = start or t
  local due = start + slot * interval
  slot = slot + 1
  if t - due > 0.005 then
    late = late + 1
  end
  return math.max(0, math.floor((due - t) * 1000 + 0.5))
end

function request()
  sent = sent + 1
  local line = pool:read("*l")
  if line == nil then
    exhausted = exhausted + 1
    return wrk.format("POST", "/pool-exhausted", headers, "")
  end
  local space = line:find(" ", 1, true)
  headers["Stripe-Signature"] = line:sub(space + 1)
  return wrk.format("POST", nil, headers, head .. line:sub(1, space - 1) .. tail)
end

function done(summary, latency, requests)
  local total_sent, total_exhausted, total_late = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
    total_exhausted = total_exhausted + thread:get("exhausted")
    total_late = total_late + thread:get("late")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "sent": %d, "exhausted": %d, '
      .. '"late": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, total_sent, total_exhausted, total_late
  ))
end
