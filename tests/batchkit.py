"""Reading a tap's BATCH output as singer-sdk targets read it, and watching its storage root."""

from __future__ import annotations

import io
import json
import typing as t
from pathlib import Path

from singer_sdk import Target
from singer_sdk.sinks import BatchSink

Message = dict[str, t.Any]
#: What a target received per BATCH message: the stream (alias), the file URI, its records.
AnnouncedFile = tuple[str, str, list[dict[str, t.Any]]]


def read_announced(messages: list[Message]) -> list[AnnouncedFile]:
    """Every file the messages announce, read by singer-sdk's own target code, in order.

    The SCHEMA and BATCH messages go through an SDK `Target` (its message reader, its
    `Sink.process_batch_files`: how MeltanoLabs target-postgres and other SDK targets load BATCH),
    which hands each file's records to a sink that keeps them.
    """
    received: list[list[dict[str, t.Any]]] = []

    class KeepingSink(BatchSink):
        def process_batch(self, context: dict[str, t.Any]) -> None:
            received.append(list(context["records"]))

    class KeepingTarget(Target):
        name = "target-keeping"
        config_jsonschema: t.ClassVar[dict[str, t.Any]] = {"type": "object", "properties": {}}
        default_sink_class = KeepingSink

    batches = [m for m in messages if m["type"] == "BATCH"]
    lines = [json.dumps(m) for m in messages if m["type"] in {"SCHEMA", "BATCH"}]
    target = KeepingTarget(config={}, validate_config=False)
    target.listen(io.StringIO("\n".join(lines) + "\n"))
    assert len(received) == sum(len(m["manifest"]) for m in batches), "a file was not read"
    files: list[AnnouncedFile] = []
    position = 0
    for message in batches:
        for uri in message["manifest"]:
            files.append((message["stream"], uri, received[position]))
            position += 1
    return files


def records_by_stream(files: list[AnnouncedFile]) -> dict[str, list[dict[str, t.Any]]]:
    """The announced files' records per stream alias, in announcement order."""
    out: dict[str, list[dict[str, t.Any]]] = {}
    for stream, _, records in files:
        out.setdefault(stream, []).extend(records)
    return out


def manifests(messages: list[Message]) -> list[str]:
    """Every announced file URI, in order."""
    return [uri for m in messages if m["type"] == "BATCH" for uri in m["manifest"]]


def uri_path(uri: str) -> Path:
    """The local path of a `file://` URI as the tap writes it (not percent-encoded)."""
    assert uri.startswith("file:///"), uri
    return Path(uri.removeprefix("file://"))


def before_last_state(messages: list[Message]) -> tuple[list[Message], dict[str, t.Any]]:
    """The messages a target commits (up to the last STATE), and that STATE's value."""
    last = max((i for i, m in enumerate(messages) if m["type"] == "STATE"), default=-1)
    state = messages[last]["value"] if last >= 0 else {}
    return messages[: last + 1], state


def part_files(root: Path) -> list[Path]:
    """Hidden, unfinished batch files under `root`."""
    return sorted(p for p in root.iterdir() if p.name.startswith(".") and p.name.endswith(".part"))


def visible_files(root: Path) -> set[Path]:
    """Files under `root` a target could be pointed at (not hidden)."""
    return {p for p in root.iterdir() if not p.name.startswith(".")}
