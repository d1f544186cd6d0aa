"""The processing side: workers claim jobs, run the handlers routed to each event, and
record the outcome (done, retry, dead letter). Handlers import from :mod:`hookline`."""
