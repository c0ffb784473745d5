"""State between Airbyte and the engine: per-stream STATE blobs in, the tap's Singer state out.

The engine keeps one state for each export family (the streams fed by one export kind, e.g. the
CRM records and exports streams): the partitions' bookmarks and in-flight jobs, in its owner stream
(rows if selected, else exports). An Airbyte destination commits a stream's records only with a
STATE of that stream, so every selected stream of a family carries the family's state as its
`stream_state`, and a changed family state is sent for the other streams first and for the owner
last. On the way in, the owner's blob wins: a read killed between the two STATE lines then
resumes from the owner's (older) position, so no row is lost or doubled, and at most the last
export's exports record comes again (its primary key `jobId` deduplicates it). A rows stream
resumes only from its own blob, as Airbyte's per-stream state means: a partition missing there
(the stream is new in the connection, or its state was cleared) is exported from the start, not
from another stream's bookmark. A stream read in `full_refresh` starts its families over (CRM:
both streams; analytics: its export type, or every type for the shared exports stream).

Accepted as `--state`: nothing, `[]` or `{}`, a list of STREAM (or GLOBAL) state messages with
unknown or null keys (PyAirbyte adds them), a LEGACY message, or a bare Singer state
(`{"bookmarks": ...}`, also wrapped as `meltano state get` prints it): a state from Meltano.
"""

from __future__ import annotations

import dataclasses
import logging
import typing as t

from tap_linkedin_crm.engine.state import MELTANO_WRAPPER_KEY, normalize_state
from tap_linkedin_crm.errors import InvalidStateError
from tap_linkedin_crm.kinds.sales_analytics import EXPORT_TYPES, TYPE_KEY
from tap_linkedin_crm.streams import STREAM_SPECS

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from tap_linkedin_crm.airbyte.catalog import ConfiguredStream
    from tap_linkedin_crm.streams import ExportStream

LOGGER = logging.getLogger("tap_linkedin_crm.airbyte")

#: Added to an owner's state while jobs run, so that a changed STATE keeps Airbyte's heartbeat
#: (Airbyte counts only RECORD and STATE messages); dropped when a state comes back.
HEARTBEAT_KEY = "heartbeatAt"
#: Stream roles whose streams share their family's state.
STATEFUL_ROLES = ("rows", "exports")


@dataclasses.dataclass(frozen=True, slots=True)
class StateGroups:
    """Which streams' state each selected stream carries.

    The engine runs one family per rows stream (with the exports stream of the same kind, which
    CRM has for itself and the analytics export types share) and keeps its partitions in the
    family's owner: the rows stream if selected, else the exports stream. A rows stream carries
    its own state; an exports stream carries the partitions of every family it belongs to.
    """

    #: Selected stream name -> the owner streams whose partitions its blob holds, in order.
    owners: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, streams: Iterable[ExportStream]) -> StateGroups:
        """The groups of the selected `streams` (snapshot streams keep no state)."""
        selected = list(streams)
        names = {s.name for s in selected}
        owners: dict[str, tuple[str, ...]] = {}
        for stream in selected:
            spec = stream.spec
            if spec.role == "rows":
                owners[stream.name] = (stream.name,)
            elif spec.role == "exports":
                rows = list(ROWS_STREAMS.get(spec.kind, ()))
                held = [r if r in names else stream.name for r in rows] or [stream.name]
                owners[stream.name] = tuple(dict.fromkeys(held))
            else:
                owners[stream.name] = ()
        return cls(owners)

    @property
    def owner(self) -> dict[str, str]:
        """Selected stream -> the stream it is owned by (itself when it owns its own state)."""
        return {
            name: name if name in held or not held else held[0]
            for name, held in self.owners.items()
        }

    def emission_order(self) -> list[str]:
        """Streams in the order their STATEs go out: exports streams first, rows streams last."""
        return sorted(self.owners, key=lambda name: self.owners[name] == (name,))

    def stream_state(self, name: str, tap_state: Mapping[str, t.Any]) -> dict[str, t.Any]:
        """`name`'s blob: the part of the tap state it carries (`{}` when there is none yet)."""
        bookmarks = tap_state.get("bookmarks") or {}
        held = self.owners.get(name, ())
        if held == (name,):
            return dict(bookmarks.get(name) or {})
        partitions = [
            entry for owner in held for entry in (bookmarks.get(owner) or {}).get("partitions", [])
        ]
        return {"partitions": partitions} if partitions else {}


def _rows_streams() -> dict[str, tuple[str, ...]]:
    """Each export kind's rows streams (by the streams' declared kind)."""
    found: dict[str, list[str]] = {}
    for spec in STREAM_SPECS:
        if spec.role == "rows":
            found.setdefault(spec.kind, []).append(spec.name)
    return {kind: tuple(names) for kind, names in found.items()}


ROWS_STREAMS = _rows_streams()


def tap_state_from_airbyte(
    raw: object, configured: Sequence[ConfiguredStream], known: Mapping[str, ExportStream]
) -> dict[str, t.Any]:
    """The tap state for this read, from what `--state` held (None when there was no file).

    `known` are all the tap's streams: a family's state may sit in a stream not read this time.

    Raises:
        InvalidStateError: The state is neither Airbyte's nor a Singer state of this tap.
    """
    if raw is None or raw in ([], {}):
        return {}
    if isinstance(raw, dict) and ("bookmarks" in raw or MELTANO_WRAPPER_KEY in raw):
        LOGGER.info("The state is a Singer state (from Meltano?); reading its bookmarks.")
        blobs = _singer_blobs(raw)
    elif isinstance(raw, dict | list):
        blobs = _airbyte_blobs(raw if isinstance(raw, list) else [raw])
    else:
        msg = "The --state file must hold a list of Airbyte STATE messages or a Singer state."
        raise InvalidStateError(msg)
    for name in sorted(set(blobs) - set(known)):
        LOGGER.info("Ignoring the state of stream %s, which this source does not have.", name)
        del blobs[name]
    return _merge(blobs, configured, known)


def _singer_blobs(raw: dict[str, t.Any]) -> dict[str, dict[str, t.Any]]:
    state, notes = normalize_state(raw)
    for note in notes:
        LOGGER.info("%s", note)
    return {name: dict(blob) for name, blob in state.get("bookmarks", {}).items()}


def _airbyte_blobs(messages: list[t.Any]) -> dict[str, dict[str, t.Any]]:
    """Each stream's last blob; a LEGACY message's `data` is read as a Singer state."""
    blobs: dict[str, dict[str, t.Any]] = {}
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            msg = f"State message {index} is not a JSON object."
            raise InvalidStateError(msg)
        if message.get("type") == "LEGACY" or (
            message.get("type") is None and isinstance(message.get("data"), dict)
        ):
            blobs.update(_singer_blobs(message.get("data") or {}))
            continue
        stream_states: list[t.Any]
        shared = message.get("global") or message.get("global_")
        if isinstance(shared, dict):
            stream_states = shared.get("stream_states") or []
        elif isinstance(message.get("stream"), dict):
            stream_states = [message["stream"]]
        else:
            msg = (
                f"State message {index} holds no stream state: expected "
                '{"type": "STREAM", "stream": {"stream_descriptor": {"name": ...}, '
                '"stream_state": {...}}}.'
            )
            raise InvalidStateError(msg)
        for stream_state in stream_states:
            name, blob = _stream_blob(stream_state, index)
            if blob is None:
                blobs.pop(name, None)
            else:
                blobs[name] = blob
    return blobs


def _stream_blob(stream_state: object, index: int) -> tuple[str, dict[str, t.Any] | None]:
    descriptor = stream_state.get("stream_descriptor") if isinstance(stream_state, dict) else None
    name = descriptor.get("name") if isinstance(descriptor, dict) else None
    if not isinstance(name, str):
        msg = f"State message {index} has a stream state without stream_descriptor.name."
        raise InvalidStateError(msg)
    assert isinstance(stream_state, dict)  # noqa: S101 - checked with the descriptor
    blob = stream_state.get("stream_state")
    if blob is None:
        return name, None
    if not isinstance(blob, dict):
        msg = f"The stream_state of stream {name} must be a JSON object."
        raise InvalidStateError(msg)
    return name, {k: v for k, v in blob.items() if k != HEARTBEAT_KEY}


def _merge(
    blobs: dict[str, dict[str, t.Any]],
    configured: Sequence[ConfiguredStream],
    known: Mapping[str, ExportStream],
) -> dict[str, t.Any]:
    """Every stream's blob as that stream's state, less the partitions a stream may not take.

    The owner's blob wins: another stream's copy of a partition the owner holds is dropped (the
    engine, `engine.state.StateStore`, would otherwise keep the copy with the later bookmark, and
    the owner's STATE, sent last, can be the older one). In Airbyte each stream's state
    is its own: a rows stream read incrementally resumes only from its own blob, so a partition
    missing there (the stream is new in the connection, or Airbyte cleared its state) is exported
    from the start, not taken over from another stream's bookmark, which would leave the stream
    without the rows before that bookmark. A family with a stream read in `full_refresh` starts
    over: its streams share their bookmarks, so none of them is used.
    """
    fresh, own = _state_sources(configured)
    state, _ = normalize_state(
        {"bookmarks": {n: b for n, b in blobs.items() if known[n].spec.role in STATEFUL_ROLES}}
    )
    bookmarks: dict[str, dict[str, t.Any]] = state["bookmarks"]
    held = {
        (name, _context_key(entry))
        for name, blob in bookmarks.items()
        for entry in blob.get("partitions", [])
    }
    for family in sorted(fresh, key=str):
        LOGGER.info("Full refresh of %s: their state is not used.", _family_text(family))
    for name, blob in list(bookmarks.items()):
        partitions = blob.get("partitions", [])
        kept = []
        for entry in partitions:
            family = (known[name].spec.kind, entry["context"].get(TYPE_KEY))
            owner = own.get(family, name)
            if family in fresh:
                continue
            if owner == name:
                kept.append(entry)
            elif (owner, _context_key(entry)) in held:
                # The owner's STATE goes out last: a copy here is as new or newer (the read
                # stopped, or the destination committed, between the two). The engine would take
                # the later bookmark, skipping rows the owner's stream never committed.
                continue
            else:
                LOGGER.info(
                    "Stream %s has no state of its own for %s (the stream is new in the "
                    "connection, or its state was cleared): exporting it from the start, not "
                    "from the bookmark in the state of %s.",
                    owner,
                    entry["context"],
                    name,
                )
        if len(kept) < len(partitions):
            blob["partitions"] = kept
            if not any(blob.values()):
                del bookmarks[name]
    return state


def _state_sources(configured: Sequence[ConfiguredStream]) -> tuple[set[Family], dict[Family, str]]:
    """Families read from no state (full refresh), and families only their rows stream may give."""
    fresh: set[Family] = set()
    own: dict[Family, str] = {}
    for stream in configured:
        spec = stream.stream.spec
        if spec.role not in STATEFUL_ROLES:
            continue
        if not stream.incremental:
            fresh.update(families_of(spec.name))
        elif spec.role == "rows":
            own.update(dict.fromkeys(families_of(spec.name), spec.name))
    return fresh, own


def _context_key(entry: Mapping[str, t.Any]) -> tuple[tuple[str, t.Any], ...]:
    return tuple(sorted(entry["context"].items()))


#: An export family in the state: the kind, and the analytics export type (None for CRM).
Family = tuple[str, str | None]


def families_of(stream: str) -> list[Family]:
    """The families whose partitions `stream`'s state holds (a rows stream: one)."""
    spec = next(s for s in STREAM_SPECS if s.name == stream)
    types = {export_type.rows_stream: export_type.name for export_type in EXPORT_TYPES}
    if spec.role == "rows":
        return [(spec.kind, types.get(stream))]
    rows = ROWS_STREAMS.get(spec.kind, ())
    return [(spec.kind, types.get(name)) for name in rows] or [(spec.kind, None)]


def _family_text(family: Family) -> str:
    kind, export_type = family
    return f"the {kind} streams" if export_type is None else f"the {export_type} exports"
