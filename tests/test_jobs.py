"""Job model, poll delays and stopping: statuses, URL expiry, jittered delays, the Stopper."""

from __future__ import annotations

import os
import random
import signal
import threading

import pytest

from tap_linkedin_crm.engine import stopper as stopper_module
from tap_linkedin_crm.engine.stopper import Stopper, stop_on_signals
from tap_linkedin_crm.errors import SyncInterruptedError
from tap_linkedin_crm.jobs import (
    ExportJob,
    JobPhase,
    JobStatus,
    PollPolicy,
    is_known_status,
    normalize_status,
    phase_of,
)

# Statuses -----------------------------------------------------------------------------------


def test_given_statuses_when_classified_then_failed_prefix_fails_and_unknown_runs() -> None:
    assert phase_of("COMPLETED") is JobPhase.COMPLETED
    assert phase_of("PROCESSING") is JobPhase.RUNNING
    assert phase_of("ENQUEUED") is JobPhase.RUNNING
    assert phase_of("FAILED_DUE_TO_INTERNAL_ERROR") is JobPhase.FAILED
    assert phase_of("FAILED_DUE_TO_SOMETHING_NEW") is JobPhase.FAILED
    assert phase_of("BRAND_NEW_STATUS") is JobPhase.RUNNING
    for ended in ("CANCELLED", "CANCELED", "ERROR", "ABORTED", "EXPIRED", "FAILURE"):
        assert phase_of(ended) is JobPhase.FAILED, ended
    assert [p.is_final for p in JobPhase] == [False, True, True]


def test_given_documented_statuses_when_checked_then_known_and_others_not() -> None:
    assert all(is_known_status(status.value) for status in JobStatus)
    assert not is_known_status("FAILED_DUE_TO_SOMETHING_NEW")
    assert not is_known_status("completed")  # callers normalize first


def test_given_status_in_any_case_when_normalized_then_documented_spelling() -> None:
    assert normalize_status(" completed\n") == "COMPLETED"
    assert normalize_status("Failed_Due_To_Timed_Out") == JobStatus.FAILED_DUE_TO_TIMED_OUT
    assert phase_of(normalize_status("processing")) is JobPhase.RUNNING


def test_given_expire_at_when_checked_then_expired_from_that_instant_or_within_margin() -> None:
    job = ExportJob(job_id=148, status="COMPLETED", expire_at=1541635625000)
    assert job.phase is JobPhase.COMPLETED
    assert job.urls_expired(1541635625000)
    assert not job.urls_expired(1541635624999)
    assert job.urls_expired(1541635624000, margin_ms=1000)
    assert not job.urls_expired(1541635623999, margin_ms=1000)
    assert not ExportJob(job_id=1, status="COMPLETED").urls_expired(2**62)


# Poll delays --------------------------------------------------------------------------------


def test_given_policy_when_delays_drawn_then_they_grow_to_the_cap_within_jitter() -> None:
    policy = PollPolicy(interval=1.0, max_interval=5.0, growth=2.0, jitter=0.1)
    delays = policy.delays(random.Random(1))
    values = [next(delays) for _ in range(8)]
    for value, nominal in zip(values, [1, 2, 4, 5, 5, 5, 5, 5], strict=True):
        assert nominal * 0.9 - 1e-9 <= value <= min(5.0, nominal * 1.1) + 1e-9
    assert len(set(values)) > 1


def test_given_no_jitter_when_delays_drawn_then_exact_geometric_steps() -> None:
    policy = PollPolicy(interval=30, max_interval=300, growth=1.5, jitter=0)
    delays = policy.delays(random.Random(0))
    assert [next(delays) for _ in range(7)] == [30, 45, 67.5, 101.25, 151.875, 227.8125, 300]


def test_given_two_jobs_when_delays_drawn_then_jitter_spreads_them() -> None:
    policy = PollPolicy(interval=10, max_interval=10, jitter=0.1)
    rng = random.Random(3)
    first, second = policy.delays(rng), policy.delays(rng)
    assert next(first) != next(second)


# Stopper ------------------------------------------------------------------------------------


def test_given_stopper_when_stopped_then_sleep_and_check_raise() -> None:
    stopper = Stopper()
    stopper.sleep(0)
    stopper.check()
    assert not stopper.wait(0)
    stopper.stop()
    assert stopper.stopped
    assert stopper.wait(10)
    with pytest.raises(SyncInterruptedError):
        stopper.sleep(10)
    with pytest.raises(SyncInterruptedError):
        stopper.check()


def test_given_a_sleeper_when_stopped_from_another_thread_then_it_wakes() -> None:
    stopper = Stopper()
    errors: list[BaseException] = []

    def sleeper() -> None:
        try:
            stopper.sleep(300)
        except SyncInterruptedError as exc:
            errors.append(exc)

    thread = threading.Thread(target=sleeper)
    thread.start()
    stopper.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert len(errors) == 1


def test_given_on_stop_callback_when_stopped_inside_block_then_called_and_not_after() -> None:
    stopper = Stopper()
    calls: list[str] = []
    with stopper.on_stop(lambda: calls.append("inside")):
        stopper.stop()
    with stopper.on_stop(lambda: calls.append("late")):
        pass  # already stopped: called at once
    stopper.stop()
    assert calls == ["inside", "late"]


def test_given_interruptible_block_when_signal_stop_then_raises_only_there() -> None:
    stopper = Stopper()
    stopper.signal_stop()  # not in a block: sets the flag, never raises
    assert stopper.stopped
    with pytest.raises(SyncInterruptedError):  # a stop before the block raises on entry
        stopper.interruptible().__enter__()

    fresh = Stopper()
    with pytest.raises(SyncInterruptedError), fresh.interruptible(), fresh.interruptible():
        fresh.signal_stop()
    other = Stopper()
    with other.interruptible():
        pass
    other.signal_stop()  # the block ended: no raise
    assert other.stopped


def test_given_sigterm_when_stop_on_signals_then_stopper_stopped_and_handler_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stopper = Stopper()
    with stop_on_signals(stopper, hard_exit=lambda: None):
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.wait(30)
    assert stopper.stopped
    assert signal.getsignal(signal.SIGTERM) is before


def test_given_no_clean_point_when_sigterm_then_watchdog_calls_hard_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stopper_module, "HARD_EXIT_SECONDS", 0.01)
    stopper = Stopper()
    fired = threading.Event()
    with stop_on_signals(stopper, hard_exit=fired.set):
        os.kill(os.getpid(), signal.SIGINT)
        assert fired.wait(30)
    assert stopper.stopped


def test_given_sigterm_inside_interruptible_block_when_signalled_then_raises_there() -> None:
    stopper = Stopper()

    def blocked_request() -> None:
        with stopper.interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            threading.Event().wait(30)  # interrupted by the handler's raise

    with stop_on_signals(stopper, hard_exit=lambda: None), pytest.raises(SyncInterruptedError):
        blocked_request()
