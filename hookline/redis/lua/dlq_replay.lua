-- dlq_replay: move dead letters back to their queues, each as a new RQ job carrying
-- the event with a fresh set of attempts (hookline/dlq/store.py, DeadLetters.replay).
--
-- KEYS[1..4]  counters and index, as in dlq_index.lua
-- KEYS[5]     RQ's set of queue keys (keys.RQ_QUEUES)
-- KEYS[6]     the counter numbering replay jobs (keys.dlq_replays())
-- ARGV[1..4]  the key layout, as in dlq_index.lua
-- ARGV[5..9]  the job layout, as in job_layout.lua (jobs.job_layout())
-- ARGV[10..]  the entry ids
--
-- Returns the ids moved. Guarantees: each entry is removed and its job written in the
-- same step, so a replay interrupted anywhere loses nothing and doubles nothing; an id
-- already gone is skipped (running the same replay again continues where it stopped).
-- @include dlq_index.lua
-- @include job_layout.lua
local layout = job_layout(KEYS[5], 5)
local moved = {}
for i = 10, #ARGV do
  local id = ARGV[i]
  local e = remove(id)
  if e then
    local env = e['envelope']
    env['attempts'] = {}
    local jid = 'dlq-' .. id .. '-' .. redis.call('INCR', KEYS[6])
    write_job_named(layout, env['queue'], jid, 'hookline: replay of dead letter ' .. id,
      {cjson.encode(env)}, false)
    moved[#moved + 1] = id
  end
end
return moved
