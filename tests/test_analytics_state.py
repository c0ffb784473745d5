"""Resuming analytics windows that the last run had split: the halves go on where they were."""

from __future__ import annotations

import logging
import typing as t

from tap_linkedin_crm.engine.state import ANALYTICS_LAYOUT, PartitionState, resume_tasks
from tap_linkedin_crm.kinds.base import InFlightJob, Partition, Window

if t.TYPE_CHECKING:
    import pytest

CONTRACT = "urn:li:contract:100001"
PARTITION = Partition(
    context={"contract": CONTRACT, "exportType": "activity"},
    label=f"contract {CONTRACT} (activity export)",
    key=CONTRACT,
)
DAY = 86_400_000


def state_with(*jobs: InFlightJob) -> PartitionState:
    state = PartitionState({"context": dict(PARTITION.context)}, ANALYTICS_LAYOUT, PARTITION.label)
    state.set_in_flight(list(jobs))
    return state


def plan(state: PartitionState, *windows: Window) -> list[tuple[Window, int | None, int]]:
    """Each task's window, the job it resumes (or None) and the rows done in that job."""
    tasks = resume_tasks(PARTITION, state, list(windows))
    return [
        (task.window, task.resume.job_id, task.resume.rows_done)
        if task.resume is not None
        else (task.window, None, 0)
        for task in tasks
    ]


def test_remembered_halves_of_a_split_window_are_resumed_with_their_positions() -> None:
    first = InFlightJob(7, Window(0, DAY), rows_done=10_000)
    second = InFlightJob(8, Window(DAY, 2 * DAY))
    tasks = plan(state_with(second, first), Window(0, 2 * DAY), Window(2 * DAY, 4 * DAY))
    assert tasks == [
        (Window(0, DAY), 7, 10_000),
        (Window(DAY, 2 * DAY), 8, 0),
        (Window(2 * DAY, 4 * DAY), None, 0),
    ]


def test_parts_of_a_window_not_remembered_get_tasks_of_their_own() -> None:
    # Quarters of a four-day window: the second and the fourth were in flight.
    state = state_with(
        InFlightJob(5, Window(DAY, 2 * DAY)), InFlightJob(6, Window(3 * DAY, 4 * DAY))
    )
    assert plan(state, Window(0, 4 * DAY)) == [
        (Window(0, DAY), None, 0),
        (Window(DAY, 2 * DAY), 5, 0),
        (Window(2 * DAY, 3 * DAY), None, 0),
        (Window(3 * DAY, 4 * DAY), 6, 0),
    ]


def test_a_remembered_window_equal_to_the_planned_one_is_resumed_whole() -> None:
    state = state_with(InFlightJob(9, Window(0, 2 * DAY), rows_done=3))
    assert plan(state, Window(0, 2 * DAY)) == [(Window(0, 2 * DAY), 9, 3)]


def test_overlapping_or_straddling_remembered_windows_are_not_resumed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = state_with(
        InFlightJob(1, Window(0, 2 * DAY)),
        InFlightJob(2, Window(DAY, 3 * DAY)),
        InFlightJob(3, Window(3 * DAY, 5 * DAY)),
    )
    with caplog.at_level(logging.INFO, logger="tap_linkedin_crm.engine"):
        tasks = plan(state, Window(0, 4 * DAY), Window(4 * DAY, 5 * DAY))
    assert tasks == [
        (Window(0, 2 * DAY), 1, 0),
        (Window(2 * DAY, 4 * DAY), None, 0),
        (Window(4 * DAY, 5 * DAY), None, 0),
    ]
    assert "export job 2 from the last run covers a window no longer planned" in caplog.text
    assert "export job 3 from the last run covers a window no longer planned" in caplog.text
