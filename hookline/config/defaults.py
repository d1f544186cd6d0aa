"""The configuration's environment variables and the defaults other modules share.

Plain constants, importable without loading the schema (and pydantic with it).
"""

#: Environment variable naming the configuration file.
CONFIG_ENV = "HOOKLINE_CONFIG"
#: Environment variable overriding ``redis.url``.
REDIS_URL_ENV = "HOOKLINE_REDIS_URL"
#: Environment variable overriding ``console.token``.
CONSOLE_TOKEN_ENV = "HOOKLINE_CONSOLE_TOKEN"  # noqa: S105 -- a variable's name, not a token
#: Default dedupe window: Stripe retries for up to 3 days.
DEFAULT_DEDUPE_WINDOW = 3 * 86400.0
#: Default replay tolerance for timestamped schemes (providers' reference value).
DEFAULT_TOLERANCE = 300.0
#: Default body size limit; GitHub can send up to 25 MB, raise it per source if needed.
DEFAULT_MAX_BODY = 1024 * 1024
#: Default backpressure threshold, in jobs waiting in the target queue.
DEFAULT_MAX_QUEUE_DEPTH = 100_000
#: Default queue name.
DEFAULT_QUEUE = "hookline"
#: Default keep-alive timeout: aiohttp's and nginx's, above the 60 s idle timeout of AWS
#: load balancers and of nginx's upstream connections.
DEFAULT_KEEPALIVE_TIMEOUT = 75.0
#: Default bound on the request bodies the receiver holds at once, across all requests.
DEFAULT_MAX_BUFFERED = 64 * 1024 * 1024
#: Default slowest rate a request body may arrive at after its first second (bytes/s):
#: a provider's servers send far faster; a client trickling a body to hold a connection
#: (and its share of the body budget) is cut off within seconds instead of body_timeout.
DEFAULT_MIN_BODY_RATE = 16 * 1024
