"""The Redis layer: keys, connections, the embedded server, Lua scripts, the job format
and the commit."""
