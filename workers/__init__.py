"""The processing side: RQ-compatible workers running idempotent handlers."""
