"""The state store: the port, its Redis and memory implementations, keys, Lua, the state cache.

Also the sync stage's per-target state and the shared API budget, which live in the same Redis.
"""
