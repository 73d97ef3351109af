"""Patterns built on the engine: dynamic tasks, fan-out/fan-in, map-reduce, sub-workflows."""
