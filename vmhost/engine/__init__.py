"""The lifecycle engine: states, per-VM locks, resources, and the operations that tie them together."""

from vmhost.engine.lifecycle import Engine

__all__ = ["Engine"]
