"""How the client paces its uploads: how many files are in flight, and how big each tus
request is (about one second of transfer at the measured rate).

``DEFAULT_PARALLEL`` files go up at once: a small file costs one round trip (its creation
carries its bytes), so N lanes hide N-1 of every N round trips; more lanes than that mostly
queue on the server. Large files share the link, which the sizer sees as a lower rate.

A progress bar fed by acknowledgements moves once per request, so a request should take
about a second: on a slow link a fixed 8 MiB chunk would hold the bar still for many seconds,
on a fast one small chunks would waste round trips. The size stays between ``MIN_CHUNK``
(or the configured maximum if that is smaller) and the configured maximum. One sizer is
shared by every upload lane; each lane's measured rate already reflects the shared link.
"""

from __future__ import annotations

import threading

DEFAULT_PARALLEL = 8
MAX_PARALLEL = 64
MIN_CHUNK = 256 * 1024
TARGET_S = 1.0
SMALL_SAMPLE = 64 * 1024  # bodies below this measure latency more than the link's rate


class ChunkSizer:
    def __init__(self, maximum: int, *, minimum: int = MIN_CHUNK, target_s: float = TARGET_S):
        self.maximum = max(1, maximum)
        self.minimum = min(minimum, self.maximum)
        self.target_s = target_s
        self.rate: float | None = None  # bytes per second, smoothed
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            if self.rate is None:
                return self.minimum
            wanted = int(self.rate * self.target_s)
        return max(self.minimum, min(self.maximum, wanted))

    def record(self, nbytes: int, seconds: float) -> None:
        """A request carrying ``nbytes`` of body took ``seconds`` to be acknowledged."""
        if nbytes < min(SMALL_SAMPLE, self.minimum) or seconds <= 0:
            return
        rate = nbytes / seconds
        with self._lock:
            self.rate = rate if self.rate is None else 0.5 * self.rate + 0.5 * rate
