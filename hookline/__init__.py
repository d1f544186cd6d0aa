"""hookline: authenticated webhook intake into Redis, processed by RQ-compatible workers."""

__version__ = "0.1.0"
