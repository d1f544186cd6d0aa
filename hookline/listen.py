"""A server's listening socket, bound before anything is logged or started.

Binding first, and only here, makes a port that is taken one clear error naming the
setting that chose it (:class:`~hookline.errors.ListenError`), raised before the
server has said it is starting, and never confused with a failure later on.
"""

from __future__ import annotations

import socket

from hookline.errors import ListenError

#: Connections the kernel queues before the server accepts them (aiohttp's default).
BACKLOG = 128


def listen(
    host: str, port: int, key: str, *, reuse_port: bool = False, listening: bool = True
) -> socket.socket:
    """A socket listening on ``host:port``, for ``web.run_app(sock=...)``.

    ``SO_REUSEADDR`` is set, as aiohttp sets it: a port whose last connections linger in
    TIME_WAIT can be bound again at once.

    Args:
        key: the configuration key or flag that chose ``port``, named if it is taken.
        reuse_port: set ``SO_REUSEPORT``: other sockets of this user may bind the same
            address (``hookline serve --processes N``).
        listening: false to bind only (a socket that holds the address, accepts nothing).

    Raises:
        ListenError: when the address cannot be bound (taken, not ours, unresolvable).
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:  # socket.gaierror included: a host that does not resolve
        raise ListenError.from_os_error(exc, host, port, key) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        if listening:
            sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ListenError.from_os_error(exc, host, port, key) from None
    return sock
