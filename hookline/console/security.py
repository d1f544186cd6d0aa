"""Who may use the console, and how its pages defend themselves.

Every request but the login page and its stylesheet must carry the configured token,
either as ``Authorization: Bearer`` (scripts) or through a session cookie that the login
form sets (browsers). The cookie holds no secret: an issue time, a random nonce and a
MAC under a key drawn at start-up, so a restart logs everyone out and a stolen cookie
says nothing about the token. A one-time login link (``GET /login?link=CODE``, printed
by ``hookline dev``) logs a browser in without typing the token: the code is an issue
time and a nonce under a MAC keyed by the token itself, so only who holds the token
can make one; the console takes each nonce once, and none older than a session.

Actions are POSTs that must come from the console's own pages: a CSRF token bound to
the session in a hidden field, and an Origin (or Referer) naming the console itself.

Every request must name an allowed host (``console.allowed_hosts``, loopback names by
default): a page reached by DNS rebinding (an attacker's name resolving to 127.0.0.1)
carries the attacker's name and is refused before the login form. Logins are limited
per client address and in all (a moving window, the ``limits`` library), so parallel
guesses are as slow as serial ones; the token must be long enough not to be guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from limits import parse, storage, strategies
from yarl import URL

from hookline.config.settings import Settings
from hookline.errors import ConfigError
from hookline.ingest.addresses import UNKNOWN, AddressSet, forwarded_client

#: Name of the session cookie.
COOKIE = "hookline_console"
#: How long a login lasts.
SESSION_SECONDS = 12 * 3600.0
#: How long a one-time login link (``hookline dev`` prints one) stays usable.
LINK_SECONDS = SESSION_SECONDS
#: Seconds a link's issue time may lie ahead of the console's clock.
LINK_CLOCK_SKEW = 60.0
#: Shortest token the console starts with: ``secrets.token_urlsafe(18)`` is 24 characters.
MIN_TOKEN_LENGTH = 24
#: Login attempts one client address may make, and all addresses together.
LOGINS_PER_ADDRESS = parse("10/minute")
LOGINS_IN_ALL = parse("60/minute")
#: Host names every console answers to (with any port).
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Headers sent with every response: no framing, no caching, no script at all.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_startup(settings: Settings, host: str) -> str:
    """The console token, after checking the console may start on ``host``.

    Raises:
        ConfigError: when no token is configured (the console then refuses to start,
            on a public address and on loopback alike).
    """
    token = settings.console.token
    make_one = (
        "`export HOOKLINE_CONSOLE_TOKEN=$(python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')` or `token = ...` under [console] in the "
        "configuration"
    )
    if token is None or not token.reveal().strip():
        where = "" if is_loopback(host) else f" and it would listen on {host}, beyond this machine"
        raise ConfigError(
            f"console.token is not set{where}: every console request needs it. Set one with "
            + make_one
        )
    length = len(token.reveal().strip())
    if length < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"console.token is too short ({length} characters, at least {MIN_TOKEN_LENGTH}): "
            f"it is all that stands between the network and the dead letters. Set a new one "
            f"with {make_one}"
        )
    return token.reveal()


def allowed_hosts(settings: Settings) -> frozenset[str]:
    """The host names the console answers to: ``console.allowed_hosts``, else the
    loopback names and the address it listens on (unless that is a wildcard)."""
    console = settings.console
    if console.allowed_hosts:
        return frozenset(host.lower().strip("[]") for host in console.allowed_hosts)
    listen = console.host.strip("[]").lower()
    extra = () if listen in ("0.0.0.0", "::", "") else (listen,)  # noqa: S104 -- compared, not bound
    return frozenset((*LOOPBACK_HOSTS, *extra))


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated caller: by cookie (a browser, CSRF-checked) or by bearer token."""

    nonce: str
    csrf: str
    by_cookie: bool


def _bytes(text: str) -> bytes:
    # Never raises, whatever a client sent (lone surrogates included), and is one-to-one.
    return text.encode("utf-8", "surrogatepass")


def _link_mac(token: bytes, body: str) -> str:
    return hmac.new(token, _bytes("login-link." + body), hashlib.sha256).hexdigest()


def login_link_code(token: str, now: float | None = None) -> str:
    """A one-time code for ``GET /login?link=CODE`` that logs a browser in.

    Made by whoever holds the console ``token`` (``hookline dev``, which generated it);
    the console accepts it once, within :data:`LINK_SECONDS` of ``now``.
    """
    body = f"{int(time.time() if now is None else now)}.{secrets.token_hex(16)}"
    return f"{body}.{_link_mac(token.encode(), body)}"


def _signed_parts(value: str) -> tuple[str, str, str] | None:
    """``ISSUED.NONCE.MAC`` split, or ``None`` for anything else a client may send."""
    issued, _, rest = value.partition(".")
    nonce, _, mac = rest.partition(".")
    # Whatever a client sent: never int() on "²", never compare_digest on non-ASCII text.
    if not (issued.isascii() and issued.isdigit() and nonce and mac):
        return None
    return issued, nonce, mac


class Guard:
    """Checks tokens, issues and reads session cookies, derives CSRF tokens, and knows the
    client: its address (through ``server.trusted_proxies``), whether it came over HTTPS
    and whether it may try to log in now."""

    def __init__(
        self,
        token: str,
        *,
        trusted_proxies: Iterable[str] = (),
        secure_cookies: bool | None = None,
    ) -> None:
        self._token = token.encode()
        self._key = secrets.token_bytes(32)
        #: Nonces of the login links used already (only who holds the token makes one).
        self._used_links: set[str] = set()
        self._proxies = AddressSet(trusted_proxies)
        self._secure_cookies = secure_cookies
        self._logins = strategies.MovingWindowRateLimiter(storage.MemoryStorage())

    def client(self, request: web.Request) -> str:
        """The client's address: the peer, or behind a trusted proxy its X-Forwarded-For."""
        forwarded = request.headers.getall("X-Forwarded-For", ())
        return forwarded_client(request.remote or UNKNOWN, forwarded, self._proxies)

    def secure(self, request: web.Request) -> bool:
        """Whether the session cookie gets ``Secure``: ``console.secure_cookies`` if set,
        else when the request came over TLS, to the console or to a trusted proxy that
        says so in ``X-Forwarded-Proto``."""
        if self._secure_cookies is not None:
            return self._secure_cookies
        if request.secure:
            return True
        proto = request.headers.get("X-Forwarded-Proto", "")
        peer = request.remote or UNKNOWN
        return peer in self._proxies and proto.split(",")[-1].strip().lower() == "https"

    def may_log_in(self, request: web.Request) -> bool:
        """Take one login attempt for the client; ``False`` when it, or everyone, has used
        up the attempts of the last minute (the token is then not even checked)."""
        client = self.client(request)
        if not self._logins.test(LOGINS_PER_ADDRESS, "address", client):
            return False
        if not self._logins.hit(LOGINS_IN_ALL, "all"):
            return False
        return self._logins.hit(LOGINS_PER_ADDRESS, "address", client)

    def who(self, request: web.Request, session: Session) -> str:
        """How the audit log names the caller: the session (or bearer token) and address."""
        what = f"console session {session.nonce[:8]}" if session.by_cookie else "console token"
        return f"{what} from {self.client(request)}"

    def token_ok(self, given: str) -> bool:
        """Whether ``given`` is the configured token (constant time)."""
        return hmac.compare_digest(_bytes(given), self._token)

    def _mac(self, message: str) -> str:
        return hmac.new(self._key, _bytes(message), hashlib.sha256).hexdigest()

    def new_cookie(self, now: float | None = None) -> str:
        """A fresh session cookie value."""
        body = f"{int(time.time() if now is None else now)}.{secrets.token_hex(16)}"
        return f"{body}.{self._mac('session.' + body)}"

    def session(self, request: web.Request) -> Session | None:
        """The request's session, from a bearer token or a valid, unexpired cookie."""
        auth = request.headers.get("Authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(given.strip()):
            return Session("bearer", "", by_cookie=False)
        parts = _signed_parts(request.cookies.get(COOKIE, ""))
        if parts is None:
            return None
        issued, nonce, mac = parts
        if not hmac.compare_digest(_bytes(mac), _bytes(self._mac(f"session.{issued}.{nonce}"))):
            return None
        if time.time() - int(issued) > SESSION_SECONDS:
            return None
        return Session(nonce, self._mac("csrf." + nonce), by_cookie=True)

    def use_link(self, code: str, now: float | None = None) -> bool:
        """Whether ``code`` is a valid login link not used before; it is used up if so."""
        parts = _signed_parts(code)
        if parts is None:
            return False
        issued, nonce, mac = parts
        expected = _link_mac(self._token, f"{issued}.{nonce}")
        if not hmac.compare_digest(_bytes(mac), _bytes(expected)):
            return False
        age = (time.time() if now is None else now) - int(issued)
        if not -LINK_CLOCK_SKEW <= age <= LINK_SECONDS or nonce in self._used_links:
            return False
        self._used_links.add(nonce)
        return True


def _names_host(url_text: str, host: str) -> bool:
    """Whether ``url_text`` (an Origin or Referer) points at ``host`` (the Host header)."""
    try:
        url = URL(url_text)
        target = URL(f"{url.scheme}://{host}")
    except ValueError:
        return False
    if url.scheme not in ("http", "https") or not url.host or not target.host:
        return False
    return (url.host.lower(), url.port) == (target.host.lower(), target.port)


def same_origin(request: web.Request) -> bool:
    """Whether a POST comes from the console's own pages, by Origin, else Referer.

    The Origin must name the host the request was sent to (its Host header), so the check
    holds directly and behind a proxy that terminates TLS and passes the Host on. A
    browser always sends Origin or Referer with a form POST: a request with neither is
    refused here (a bearer-token script without them is let through by the caller).
    """
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is not None:
        return _names_host(origin, request.host)
    referer = request.headers.get("Referer")
    return referer is not None and _names_host(referer, request.host)


def _has_origin(request: web.Request) -> bool:
    return "Origin" in request.headers or "Referer" in request.headers


def _wants_html(request: web.Request) -> bool:
    return request.method == "GET" and "text/html" in request.headers.get("Accept", "")


SESSION = web.RequestKey("session", Session)


def _host_name(host: str) -> str:
    """The name in a Host header, without its port, lower-cased (``[::1]:8081`` → ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0].lower()
    return host.rpartition(":")[0].lower() if host.count(":") == 1 else host.lower()


def guard_middleware(guard: Guard, hosts: frozenset[str]) -> Middleware:
    """A middleware that lets through only requests naming an allowed host, then only
    authenticated, same-origin ones (the login form and stylesheet excepted)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _host_name(request.headers.get("Host", "")) not in hosts:
            raise web.HTTPMisdirectedRequest(
                text="this console does not answer to that host name; "
                "list it in console.allowed_hosts"
            )
        if request.path == "/login" or request.path.startswith("/static/"):
            if request.method == "POST" and not same_origin(request):
                raise web.HTTPForbidden(text="cross-site request refused")
            return await handler(request)
        session = guard.session(request)
        if session is None:
            if _wants_html(request):
                raise web.HTTPSeeOther(URL("/login").with_query(next=request.path_qs))
            raise web.HTTPUnauthorized(
                text="a console token is required", headers={"WWW-Authenticate": "Bearer"}
            )
        if request.method not in ("GET", "HEAD"):
            if (session.by_cookie or _has_origin(request)) and not same_origin(request):
                raise web.HTTPForbidden(text="cross-site request refused")
            if session.by_cookie:
                form = await request.post()
                given = form.get("csrf")
                if not isinstance(given, str) or not hmac.compare_digest(
                    _bytes(given), _bytes(session.csrf)
                ):
                    raise web.HTTPForbidden(text="missing or wrong CSRF token; reload the page")
        request[SESSION] = session
        return await handler(request)

    return middleware


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook adding :data:`SECURITY_HEADERS` to every response."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
