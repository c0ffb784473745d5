"""The sandbox clock: real time plus an offset that tests advance instead of sleeping."""

from __future__ import annotations

import threading
import time

#: One day in milliseconds (the sandbox clock's epoch-ms arithmetic).
DAY_MS = 86_400_000


class SandboxClock:
    """Wall-clock time shifted by an offset that only ever grows.

    Every time-dependent decision in the sandbox (token expiry, job processing time, download URL
    expiry, the 7-day job retention, the 30-day look-back) reads this clock, so a test can jump two
    hours or eight days ahead with :meth:`advance` and the sandbox behaves as if that time passed.
    """

    def __init__(self, offset_seconds: float = 0.0) -> None:
        """Start the clock at real time plus ``offset_seconds``."""
        self._offset = float(offset_seconds)
        self._lock = threading.Lock()

    @property
    def offset_seconds(self) -> float:
        """How far the clock runs ahead of real time, in seconds."""
        with self._lock:
            return self._offset

    def now(self) -> float:
        """Return the sandbox time as epoch seconds."""
        with self._lock:
            offset = self._offset
        return time.time() + offset

    def now_ms(self) -> int:
        """Return the sandbox time as epoch milliseconds, the unit LinkedIn uses."""
        return int(self.now() * 1000)

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward.

        Args:
            seconds: How far to jump; must not be negative.

        Raises:
            ValueError: If ``seconds`` is negative.
        """
        if seconds < 0:
            msg = "the sandbox clock only moves forward"
            raise ValueError(msg)
        with self._lock:
            self._offset += seconds
