"""State: its layout, the bookmark rule, the resume plan, and checks on the state given to the tap.

The tap state is Singer's: `{"bookmarks": {stream: {"partitions": [entry, ...]}}}`, one entry per
partition of an export kind, kept by the kind's "owner" stream (its rows stream if selected, else
its exports stream). A CRM entry (unchanged since the first release, so old state files resume):

    {"context": {"crmInstanceId": urn},
     "replication_key": "exportEndAt", "replication_key_value": <ms>,  # last emitted job's end
     "nextExportStartAt": <ms>,                                         # next job's start
     "inFlightJob": {"jobId", "exportStartAt", "createdAt", "attempt",  # job not fully emitted
                     "fileIndex", "rowsDone"}}

An analytics entry keeps a list, since several windows may be in flight:

    {"context": {"contract": urn, "exportType": "activity"},
     "replication_key": "endAt", "replication_key_value": <ms>,  # end of last emitted window
     "inFlightJobs": [{"jobId", "startAt", "endAt", "createdAt", "attempt",
                       "fileIndex", "rowsDone"}]}

The bookmark moves only once every row of a window was emitted, never backwards, never to null.
"""

from __future__ import annotations

import copy
import logging
import typing as t
from dataclasses import dataclass

from tap_linkedin_crm.errors import InvalidStateError
from tap_linkedin_crm.kinds.base import ExportTask, InFlightJob, Window

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from tap_linkedin_crm.jobs import ExportJob
    from tap_linkedin_crm.kinds.base import Partition

LOGGER = logging.getLogger("tap_linkedin_crm.engine")

#: What `meltano state get` prints around the tap's state.
MELTANO_WRAPPER_KEY = "singer_state"


@dataclass(frozen=True, slots=True)
class StateLayout:
    """The field names one export kind uses in its state entries."""

    replication_key: str
    #: Field holding the next window's start, when it differs from the last window's end (CRM).
    next_start_field: str | None
    #: Field of the in-flight job(s); a single object when `single_in_flight`, else a list.
    in_flight_field: str
    single_in_flight: bool
    start_field: str
    end_field: str | None


CRM_LAYOUT = StateLayout(
    replication_key="exportEndAt",
    next_start_field="nextExportStartAt",
    in_flight_field="inFlightJob",
    single_in_flight=True,
    start_field="exportStartAt",
    end_field=None,
)
ANALYTICS_LAYOUT = StateLayout(
    replication_key="endAt",
    next_start_field=None,
    in_flight_field="inFlightJobs",
    single_in_flight=False,
    start_field="startAt",
    end_field="endAt",
)


def normalize_state(raw: object) -> tuple[dict[str, t.Any], list[str]]:  # noqa: C901 - one check per shape
    """Check the shape of a state given to the tap; unwrap Meltano's wrapper.

    Returns:
        The state to use, and notes worth logging (e.g. that a wrapper was removed).

    Raises:
        InvalidStateError: The state is not one this tap wrote: says what and where.
    """
    notes: list[str] = []
    if raw is None:
        return {}, notes
    if not isinstance(raw, dict):
        msg = f"The state must be a JSON object, not a {_json_type(raw)}."
        raise InvalidStateError(msg)
    state = raw
    if MELTANO_WRAPPER_KEY in state and "bookmarks" not in state:
        inner = state[MELTANO_WRAPPER_KEY]
        if not isinstance(inner, dict):
            msg = f'The state\'s "{MELTANO_WRAPPER_KEY}" must be a JSON object.'
            raise InvalidStateError(msg)
        notes.append(
            f'The state was wrapped as {{"{MELTANO_WRAPPER_KEY}": ...}} (as `meltano state get` '
            "prints it); using the state inside."
        )
        state = inner
    bookmarks = state.get("bookmarks", {})
    if bookmarks is None:
        bookmarks = {}
    if not isinstance(bookmarks, dict):
        msg = (
            f'The state\'s "bookmarks" must be an object of streams, not a {_json_type(bookmarks)}.'
        )
        raise InvalidStateError(msg)
    for stream, stream_state in bookmarks.items():
        if not isinstance(stream_state, dict):
            msg = f'State of stream "{stream}" must be an object, not a {_json_type(stream_state)}.'
            raise InvalidStateError(msg)
        partitions = stream_state.get("partitions", [])
        if not isinstance(partitions, list):
            msg = f'"partitions" of stream "{stream}" must be a list.'
            raise InvalidStateError(msg)
        for index, entry in enumerate(partitions):
            context = entry.get("context") if isinstance(entry, dict) else None
            if not isinstance(context, dict):
                msg = (
                    f'Partition {index} of stream "{stream}" has no "context" object; every '
                    "partition this tap writes names its CRM instance or contract there."
                )
                raise InvalidStateError(msg)
    return {**state, "bookmarks": copy.deepcopy(bookmarks)}, notes


def _json_type(value: object) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )


class PartitionState:
    """One partition's mutable state entry, read and written through the kind's layout."""

    def __init__(self, entry: dict[str, t.Any], layout: StateLayout, label: str) -> None:
        """Wrap `entry` (the dict inside the tap state: changes are the state's changes)."""
        self.entry = entry
        self.layout = layout
        self.label = label

    @property
    def bookmark(self) -> int | None:
        """Where the next window starts (None: no export was completed yet).

        Raises:
            InvalidStateError: The stored bookmark is not a number.
        """
        entry = self.entry
        value = entry.get(self.layout.next_start_field) if self.layout.next_start_field else None
        if value is None:
            value = entry.get("replication_key_value")
        return _optional_epoch_ms(value, f"{self.label}: bookmark")

    def complete(self, bookmark: int, window_end: int | None) -> int:
        """Move the bookmark past a fully emitted window; it never moves backwards.

        Returns:
            The bookmark now stored.
        """
        current = self.bookmark
        value = bookmark if current is None else max(current, bookmark)
        self.entry["replication_key"] = self.layout.replication_key
        if self.layout.next_start_field:
            self.entry["replication_key_value"] = window_end if window_end is not None else value
            self.entry[self.layout.next_start_field] = value
        else:
            self.entry["replication_key_value"] = value
        return value

    def in_flight(self) -> list[InFlightJob]:
        """The jobs created but not fully emitted, in window order.

        Raises:
            InvalidStateError: An entry is not what the tap writes.
        """
        raw = self.entry.get(self.layout.in_flight_field)
        if raw is None:
            return []
        items = [raw] if self.layout.single_in_flight else raw
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            msg = f"{self.label}: {self.layout.in_flight_field} in the state is malformed."
            raise InvalidStateError(msg)
        return [self._parse_in_flight(item) for item in items]

    def set_in_flight(self, jobs: Sequence[InFlightJob]) -> None:
        """Remember these jobs (in window order) as in flight; none removes the field."""
        field = self.layout.in_flight_field
        entries = [self._format_in_flight(job) for job in jobs]
        if not entries:
            self.entry.pop(field, None)
        elif self.layout.single_in_flight:
            self.entry[field] = entries[0]
        else:
            self.entry[field] = entries

    def _parse_in_flight(self, item: Mapping[str, t.Any]) -> InFlightJob:
        where = f"{self.label}: {self.layout.in_flight_field}"
        job_id = _optional_ms(item.get("jobId"), f"{where}.jobId")
        start = _optional_epoch_ms(
            item.get(self.layout.start_field), f"{where}.{self.layout.start_field}"
        )
        if job_id is None or start is None:
            msg = f"{where} lacks jobId or {self.layout.start_field}."
            raise InvalidStateError(msg)
        end = None
        if self.layout.end_field:
            end = _optional_epoch_ms(
                item.get(self.layout.end_field), f"{where}.{self.layout.end_field}"
            )
        counts = {
            name: _optional_ms(item.get(name), f"{where}.{name}")
            for name in ("attempt", "fileIndex", "rowsDone")
        }
        if any(value is not None and value < 0 for value in counts.values()):
            msg = f"{where} has a negative attempt, fileIndex or rowsDone."
            raise InvalidStateError(msg)
        return InFlightJob(
            job_id=job_id,
            window=Window(start, end),
            created_at=_optional_epoch_ms(item.get("createdAt"), f"{where}.createdAt"),
            attempt=counts["attempt"] or 1,
            file_index=counts["fileIndex"] or 0,
            rows_done=counts["rowsDone"] or 0,
        )

    def _format_in_flight(self, job: InFlightJob) -> dict[str, t.Any]:
        entry: dict[str, t.Any] = {
            "jobId": job.job_id,
            self.layout.start_field: job.window.start_at,
        }
        if self.layout.end_field:
            entry[self.layout.end_field] = job.window.end_at
        entry["createdAt"] = job.created_at
        entry["attempt"] = job.attempt
        if job.file_index or job.rows_done:
            entry["fileIndex"] = job.file_index
            entry["rowsDone"] = job.rows_done
        return entry


def _optional_ms(value: object, what: str) -> int | None:
    """An integer field of the state (epoch ms, ids, counts), or None when absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        msg = f"{what} in the state is {value!r}, not a number."
        raise InvalidStateError(msg)
    if isinstance(value, float) and not value.is_integer():
        msg = f"{what} in the state is {value!r}, not a whole number."
        raise InvalidStateError(msg)
    return int(value)


#: The last millisecond of year 9999: later (or negative) epoch values are no calendar's.
_MAX_EPOCH_MS = 253_402_300_799_999


def _optional_epoch_ms(value: object, what: str) -> int | None:
    """An epoch-ms field of the state (a bookmark, a window, a time), or None when absent.

    Raises:
        InvalidStateError: Not a whole number, or not an instant from 1970 to year 9999.
    """
    ms = _optional_ms(value, what)
    if ms is not None and not 0 <= ms <= _MAX_EPOCH_MS:
        msg = f"{what} in the state is {value!r}, not epoch milliseconds from 1970 to year 9999."
        raise InvalidStateError(msg)
    return ms


class StateStore:
    """The partitions of the tap state, found and created by stream and context."""

    def __init__(self, state: dict[str, t.Any]) -> None:
        """Work on `state` (the tap's state dict) in place."""
        self.state = state

    def entry(
        self,
        owner: str,
        others: Iterable[str],
        context: Mapping[str, str],
        layout: StateLayout | None = None,
    ) -> dict[str, t.Any]:
        """The owner stream's entry for `context`, created if needed.

        When only another stream of the same kind has one (the selection changed since the
        last run), it is moved to the owner, so the bookmark is not lost. When several streams
        have one (the first release kept a copy per stream, and only the selected streams'
        copies moved on), the one with the latest bookmark (read through `layout`) is kept,
        under the owner, and the stale copies are dropped: they must never move the bookmark
        back. If a copy cannot be read, all are left as they are (the owner's error shows).
        """
        found = [(owner, e)] if (e := self._find(owner, context)) is not None else []
        for other in others:
            entry = self._find(other, context)
            if entry is not None:
                found.append((other, entry))
        if not found:
            entry = {"context": dict(context)}
            self._partitions(owner).append(entry)
            return entry
        stream, entry = found[0]
        if len(found) > 1 and layout is not None:
            try:
                marks = [PartitionState(e, layout, "").bookmark for _, e in found]
            except InvalidStateError:
                return entry if stream == owner else self._move(stream, owner, entry)
            # The latest bookmark; on a tie the first found (the owner's, if it has one).
            best = max(
                range(len(found)),
                key=lambda i: (marks[i] is not None, marks[i] or 0, -i),
            )
            for index, (name, stale) in enumerate(found):
                if index != best:
                    self._partitions(name).remove(stale)
            stream, entry = found[best]
        return entry if stream == owner else self._move(stream, owner, entry)

    def _move(self, stream: str, owner: str, entry: dict[str, t.Any]) -> dict[str, t.Any]:
        self._partitions(stream).remove(entry)
        self._partitions(owner).append(entry)
        return entry

    def _find(self, stream: str, context: Mapping[str, str]) -> dict[str, t.Any] | None:
        for entry in self._partitions(stream, create=False):
            if entry.get("context") == dict(context):
                return entry
        return None

    def _partitions(self, stream: str, *, create: bool = True) -> list[dict[str, t.Any]]:
        bookmarks = (
            self.state.setdefault("bookmarks", {}) if create else self.state.get("bookmarks", {})
        )
        if stream not in bookmarks and not create:
            return []
        stream_state = bookmarks.setdefault(stream, {})
        return t.cast("list[dict[str, t.Any]]", stream_state.setdefault("partitions", []))


def resume_tasks(
    partition: Partition, state: PartitionState, windows: Sequence[Window]
) -> list[ExportTask]:
    """One task per window, each resuming the in-flight job remembered for that window.

    A window that was split in the last run (a job too big for LinkedIn) is planned whole again;
    the halves remembered inside it are resumed as they were, and the rest of it gets tasks of its
    own, so a half whose rows were partly emitted goes on from its position. In-flight jobs of
    windows no longer planned (the settings changed) are dropped with a note.
    """
    remembered = {(job.window.start_at, job.window.end_at): job for job in state.in_flight()}
    tasks = []
    for window in windows:
        resume = remembered.pop((window.start_at, window.end_at), None)
        inside = [] if resume is not None else _inside(window, remembered.values())
        if not inside:
            tasks.append(ExportTask(partition=partition, window=window, resume=resume))
            continue
        assert window.end_at is not None  # noqa: S101 - only fixed windows hold others
        start = window.start_at
        for job in inside:
            del remembered[(job.window.start_at, job.window.end_at)]
            if job.window.start_at > start:
                gap = Window(start, job.window.start_at)
                tasks.append(ExportTask(partition=partition, window=gap))
            tasks.append(ExportTask(partition=partition, window=job.window, resume=job))
            start = t.cast("int", job.window.end_at)
        if start < window.end_at:
            tasks.append(ExportTask(partition=partition, window=Window(start, window.end_at)))
    for job in remembered.values():
        LOGGER.info(
            "%s: export job %s from the last run covers a window no longer planned; not resumed.",
            partition.label,
            job.job_id,
        )
    return tasks


def _inside(window: Window, jobs: Iterable[InFlightJob]) -> list[InFlightJob]:
    """The remembered jobs of parts of a fixed `window`, in order, none overlapping another."""
    if window.end_at is None:
        return []
    inside: list[InFlightJob] = []
    for job in sorted(jobs, key=lambda j: j.window.start_at):
        end = job.window.end_at
        if end is None or job.window.start_at < window.start_at or end > window.end_at:
            continue
        if inside and job.window.start_at < t.cast("int", inside[-1].window.end_at):
            continue  # overlaps the one before (not a state this tap writes): not resumed
        inside.append(job)
    return inside


@dataclass(frozen=True, slots=True)
class NextBookmark:
    """Where the next window starts after a completed job, and which fallback gave it."""

    value: int
    fallback: str | None = None


def bookmark_after(task: ExportTask, job: ExportJob, created_at: int) -> NextBookmark:
    """The bookmark once every row of `job` was emitted.

    A fixed window (analytics) ends where it ends. An open window (CRM: "from exportStartAt until
    now") continues at LinkedIn's `nextExportStartAt` when that is later than the job's start,
    else at `exportEndAt`, else at the job's creation time (LinkedIn's `Date` header): the
    bookmark always moves past a completed job's window.
    """
    if task.window.end_at is not None:
        return NextBookmark(task.window.end_at)
    start = job.start_at if job.start_at is not None else task.window.start_at
    if job.next_start_at is not None and job.next_start_at > start:
        return NextBookmark(job.next_start_at)
    suggested = (
        "absent"
        if job.next_start_at is None
        else f"{job.next_start_at}, not later than the job's exportStartAt {start}"
    )
    if job.end_at is not None and job.end_at > start:
        return NextBookmark(job.end_at, f"exportEndAt (nextExportStartAt was {suggested})")
    return NextBookmark(
        max(created_at, start + 1),
        f"the job's creation time (nextExportStartAt was {suggested}, exportEndAt "
        f"{'absent' if job.end_at is None else job.end_at})",
    )
