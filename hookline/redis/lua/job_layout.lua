-- Fragment: write RQ jobs by queue name and job id, for scripts that learn those only
-- inside Redis (a replay reads the queue from the dead letter). Included with
-- `-- @include job_layout.lua`; it includes write_job.lua itself.
--
-- job_layout(registry, at) -> layout
--   registry   RQ's set of queue keys (keys.RQ_QUEUES), a key the script was given
--   at         where in ARGV the five values of jobs.job_layout() start:
--              queue key prefix, job key prefix, created time, function, timeout
-- write_job_named(layout, qname, jid, descr, envelopes, front)
--   write_job (see write_job.lua) with the keys built from the prefixes passed in:
--   no key prefix is spelt in Lua.
-- @include write_job.lua
local function job_layout(registry, at)
  return {registry = registry, queue = ARGV[at], job = ARGV[at + 1], now = ARGV[at + 2],
    func = ARGV[at + 3], timeout = ARGV[at + 4]}
end
local function write_job_named(layout, qname, jid, descr, envelopes, front)
  write_job(layout.registry, layout.queue .. qname, layout.job .. jid, qname, jid, layout.now,
    layout.timeout, descr, layout.func, envelopes, front)
end
