"""Per-member daily call quotas, reset at midnight UTC of the sandbox clock.

Documented (linkedin-api.md section 1): LinkedIn limits calls per application and per member per
day, resets the counts at midnight UTC and answers 429 beyond them; the numbers are not published.
The member variant of the 429 message is inferred from the application one seen in the wild.
"""

from __future__ import annotations

import threading
import typing as t

from tap_linkedin_crm.sandbox.clock import DAY_MS

if t.TYPE_CHECKING:
    from collections.abc import Mapping

    from tap_linkedin_crm.sandbox.clock import SandboxClock

MEMBER_DAILY_LIMIT_MESSAGE = (
    "Resource level throttle MEMBER DAY limit for calls to this resource is reached."
)


class MemberDailyQuota:
    """Counts each member's calls per endpoint and UTC day; thread-safe."""

    def __init__(self, limits: Mapping[str, int], clock: SandboxClock) -> None:
        """Enforce ``limits`` (endpoint to calls per member per day) on the ``clock``'s days."""
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._calls: dict[tuple[str, str, int], int] = {}

    def consume(self, member: str, endpoint: str) -> bool:
        """Count one call; ``False`` (and not counted) if the member's quota for today is spent."""
        limit = self._limits.get(endpoint)
        if limit is None:
            return True
        key = (member, endpoint, self._clock.now_ms() // DAY_MS)
        with self._lock:
            used = self._calls.get(key, 0)
            if used >= limit:
                return False
            self._calls[key] = used + 1
        return True
