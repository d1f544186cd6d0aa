"""The ``hookline`` command: serve, work, dev, send, keygen, check, dlq and console."""

from hookline.cli.main import main

__all__ = ["main"]
