-- wrk script: POST a distinct pre-signed Stripe event on every request (see bench/pool.py).
--
-- Usage: wrk ... -s pool.lua URL -- POOL_DIR
-- POOL_DIR holds head.bin and tail.bin (the body around the event id) and, for wrk thread
-- N, thread-N.txt: one "<event id> <Stripe-Signature>" line per request, or, for other
-- schemes, "<event id> " then tab-separated "<Name>: <value>" headers. Threads read
-- separate files, so no id is sent twice. done() prints one line, "BENCH_RESULT {json}".

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

local head, tail, pool
local headers = {
  ["Content-Type"] = "application/json; charset=utf-8",
  ["User-Agent"] = "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
}

function init(args)
  head = slurp(args[1] .. "/head.bin")
  tail = slurp(args[1] .. "/tail.bin")
  pool = assert(io.open(args[1] .. "/thread-" .. tid .. ".txt", "rb"))
  -- Globals, so that done() can read them with thread:get().
  sent, exhausted = 0, 0
end

function request()
  sent = sent + 1
  local line = pool:read("*l")
  if line == nil then
    -- Out of events: a path every target answers 404, never counted as accepted.
    exhausted = exhausted + 1
    return wrk.format("POST", "/pool-exhausted", headers, "")
  end
  local space = line:find(" ", 1, true)
  local rest = line:sub(space + 1)
  if rest:sub(1, 1) == "\t" then
    for name, value in rest:gmatch("\t([^:\t]+): ([^\t]*)") do
      headers[name] = value
    end
  else
    headers["Stripe-Signature"] = rest
  end
  return wrk.format("POST", nil, headers, head .. line:sub(1, space - 1) .. tail)
end

function done(summary, latency, requests)
  local total_sent, total_exhausted = 0, 0
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
    total_exhausted = total_exhausted + thread:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, '
      .. '"p99_us": %d, "max_us": %d, "mean_us": %.1f, "sent": %d, "exhausted": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean, total_sent, total_exhausted
  ))
end
