"""Stopping a run: the stop flag that waits and reads watch, and the SIGTERM/Ctrl-C handlers.

A stop lets the run end at a clean point (between two rows) with a resumable STATE. If that point
never comes, because stdout is blocked (the consumer stopped reading) and the main thread sits in
`write()`, a watchdog ends the process after `HARD_EXIT_SECONDS`: the last STATE already written
is complete and still resumes the sync.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import typing as t

from tap_linkedin_crm.errors import SyncInterruptedError

if t.TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import FrameType

LOGGER = logging.getLogger("tap_linkedin_crm.engine")

#: Exit status of a sync stopped by SIGTERM/Ctrl-C (its last STATE resumes it).
EXIT_INTERRUPTED = 130
#: How long a stop may take before the process is ended without a clean point.
HARD_EXIT_SECONDS = 4.0


class Stopper:
    """A stop flag that sleeping code can wait on, so SIGTERM interrupts a long wait at once.

    Code blocked elsewhere registers an `on_stop` callback that unblocks it (a socket read that
    yields rows), or runs in an `interruptible` block (a request that writes nothing), where a
    signal raises `SyncInterruptedError` at once.
    """

    def __init__(self) -> None:
        """Start not stopped."""
        self._event = threading.Event()
        # No lock: `stop` runs in signal handlers, which must not wait for one the interrupted
        # code may hold. Single dict and set operations are atomic under the GIL.
        self._callbacks: dict[object, Callable[[], None]] = {}
        self._interruptible: set[int] = set()

    def stop(self) -> None:
        """Ask every waiter to stop, and run the registered callbacks."""
        self._event.set()
        for callback in list(self._callbacks.values()):
            callback()

    @contextlib.contextmanager
    def on_stop(self, callback: Callable[[], None]) -> Iterator[None]:
        """Within the block, a stop also calls `callback` (which must be quick and not raise)."""
        key = object()
        self._callbacks[key] = callback
        if self._event.is_set():
            callback()  # the stop came before the block: do now what it would have done
        try:
            yield
        finally:
            self._callbacks.pop(key, None)

    @contextlib.contextmanager
    def interruptible(self) -> Iterator[None]:
        """Within the block, `signal_stop` raises in this thread instead of waiting for it.

        Only for blocking calls that write no output and hold no state a stop could tear (an
        HTTP request in the main thread); never around a `yield`.

        Raises:
            SyncInterruptedError: A stop was asked for before the block.
        """
        self.check()
        ident = threading.get_ident()
        nested = ident in self._interruptible
        self._interruptible.add(ident)
        try:
            yield
        finally:
            if not nested:
                self._interruptible.discard(ident)

    def signal_stop(self) -> None:
        """Stop, from a signal handler: inside an `interruptible` block, also raise there.

        Raises:
            SyncInterruptedError: The interrupted code was in an `interruptible` block.
        """
        self.stop()
        if threading.get_ident() in self._interruptible:
            msg = "sync interrupted"
            raise SyncInterruptedError(msg)

    @property
    def stopped(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()

    def sleep(self, seconds: float) -> None:
        """Sleep, waking early on stop.

        Raises:
            SyncInterruptedError: A stop was asked for (before or during the sleep).
        """
        if self._event.wait(max(0.0, seconds)):
            msg = "sync interrupted"
            raise SyncInterruptedError(msg)

    def wait(self, seconds: float) -> bool:
        """Wait up to `seconds`; True if a stop came (never raises)."""
        return self._event.wait(max(0.0, seconds))

    def check(self) -> None:
        """Raise if a stop was asked for.

        Raises:
            SyncInterruptedError: A stop was asked for.
        """
        if self._event.is_set():
            msg = "sync interrupted"
            raise SyncInterruptedError(msg)


def _hard_exit() -> None:
    """End the process now: the clean stop did not come (stdout is blocked)."""
    with contextlib.suppress(Exception):
        LOGGER.error(
            "Could not stop at a clean point within %.0f s (is the consumer still reading "
            "stdout?); exiting now. The last STATE written resumes the sync.",
            HARD_EXIT_SECONDS,
        )
        sys.stderr.flush()
    os._exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def stop_on_signals(
    stopper: Stopper, *, hard_exit: Callable[[], None] = _hard_exit
) -> Iterator[None]:
    """Within the block, SIGTERM/SIGINT stop the run at its next clean point.

    A request blocked in the main thread (`Stopper.interruptible`) is abandoned at once, and a
    file download blocked in a socket read has its socket shut, so no stop waits for
    `request_timeout`. A watchdog ends the process if the clean point does not come in time.
    Outside the main thread, signals are left to the host program.
    """
    watchdog: list[threading.Timer] = []

    def handler(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001
        if not watchdog:
            LOGGER.warning(
                "Received signal %d: stopping at the next clean point and saving state.", signum
            )
            timer = threading.Timer(HARD_EXIT_SECONDS, hard_exit)
            timer.daemon = True
            watchdog.append(timer)
            timer.start()
        stopper.signal_stop()

    previous: dict[signal.Signals, t.Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            continue
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        for timer in watchdog:
            timer.cancel()
