"""A bound on guessing tokens: a source that presented WRONG_TOKENS wrong tokens (bearer header, a websocket's
?token=, or the dashboard's sign-in) within WINDOW_SECONDS is refused, right token or not, with 429 until the
oldest of those is WINDOW_SECONDS old.

Tokens are 256-bit random, so guessing one is hopeless anyway; the bound keeps a guesser from using the agent
as a fast oracle and from filling its log. Refusing the right token too is what makes it a bound (otherwise a
429 would tell a wrong guess from a right one). Loopback callers are not counted: they are processes of this
host, and counting them would let any local user lock root's CLI out. Behind `trusted_proxies` the source is
the client the proxy names.
"""

import threading
import time
from collections import OrderedDict, deque

WRONG_TOKENS = 30
WINDOW_SECONDS = 60.0
MAX_SOURCES = 10_000
"""Sources remembered at most; beyond, the one that guessed least recently is forgotten (memory stays bounded)."""


class WrongTokens:
    def __init__(self, limit: int = WRONG_TOKENS, window: float = WINDOW_SECONDS, sources: int = MAX_SOURCES):
        self._limit, self._window, self._sources = limit, window, sources
        self._lock = threading.Lock()
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, source: str | None) -> float:
        """Seconds until `source` may present a token again; 0 when it may now. None: a source not counted."""
        if source is None:
            return 0.0
        with self._lock:
            failures = self._recent(source)
            if failures is None or len(failures) < self._limit:
                return 0.0
            return failures[0] + self._window - time.monotonic()

    def failed(self, source: str | None) -> None:
        if source is None:
            return
        with self._lock:
            failures = self._recent(source)
            if failures is None:
                failures = self._failures[source] = deque(maxlen=self._limit)
                if len(self._failures) > self._sources:
                    self._failures.popitem(last=False)
            failures.append(time.monotonic())
            self._failures.move_to_end(source)

    def _recent(self, source: str) -> deque[float] | None:
        failures = self._failures.get(source)
        if failures is not None:
            while failures and failures[0] <= time.monotonic() - self._window:
                failures.popleft()
        return failures
