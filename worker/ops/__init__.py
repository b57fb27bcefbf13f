"""Operations: the `ilog` CLI, replay, DLQ tools, inspect, offline fold and validate."""
