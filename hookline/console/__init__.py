"""The on-call web console: server-rendered pages over the dead-letter queue.

See :func:`hookline.console.app.create_console_app`.
"""
