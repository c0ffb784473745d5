"""BATCH output pieces in one process: settings, storage (local and staged), names, clean-up."""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import json
import os
import socket
import subprocess
import sys
import typing as t

import fsspec
import pytest
from fsspec.implementations.local import LocalFileSystem

from tap_linkedin_crm.errors import ConsumerGoneError
from tap_linkedin_crm.output import batch as batch_module
from tap_linkedin_crm.output.batch import (
    BatchOutput,
    BatchRecordSink,
    BatchSettings,
    BatchStorage,
    BatchStorageError,
)
from tap_linkedin_crm.output.writer import BufferedSingerWriter
from tap_linkedin_crm.tap import TapLinkedInCRM

if t.TYPE_CHECKING:
    from pathlib import Path


def settings(root: str, **config: t.Any) -> BatchSettings:
    return BatchSettings.from_config({"storage": {"root": root}, **config})


def test_defaults_are_gzipped_jsonl_files_of_10000_records(tmp_path: Path) -> None:
    chosen = settings(f"file://{tmp_path}")
    assert (chosen.format, chosen.compression, chosen.batch_size) == ("jsonl", "gzip", 10_000)
    assert chosen.suffix == ".jsonl.gz"
    assert chosen.encoding == {"format": "jsonl", "compression": "gzip"}


def test_batch_size_may_be_a_string_of_digits_as_meltano_passes_undeclared_settings(
    tmp_path: Path,
) -> None:
    assert settings(f"file://{tmp_path}", batch_size="50000").batch_size == 50_000
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        settings(f"file://{tmp_path}", batch_size="-5")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        settings(f"file://{tmp_path}", batch_size=True)


def test_parquet_without_pyarrow_says_which_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = importlib.util.find_spec

    def without_pyarrow(name: str, *args: t.Any) -> t.Any:
        return None if name == "pyarrow" else real(name, *args)

    monkeypatch.setattr(batch_module.importlib.util, "find_spec", without_pyarrow)
    with pytest.raises(ValueError, match=r"tap-linkedin-crm\[parquet\]"):
        settings(f"file://{tmp_path}", encoding={"format": "parquet"})


def test_a_storage_failure_is_a_consumer_gone_error_so_the_run_writes_no_further_state() -> None:
    assert issubclass(BatchStorageError, ConsumerGoneError)


# Storage ------------------------------------------------------------------------------------


def test_a_local_file_appears_under_its_name_only_when_committed(tmp_path: Path) -> None:
    storage = BatchStorage(settings(f"file://{tmp_path}/new/dir"))
    assert storage.local
    pending = storage.create("x.jsonl")
    pending.handle.write(b"{}\n")
    assert [p.name for p in (tmp_path / "new" / "dir").iterdir()] == [
        f".x.jsonl.{storage.host}.{os.getpid()}.part"
    ]
    pending.commit()
    assert [p.name for p in (tmp_path / "new" / "dir").iterdir()] == ["x.jsonl"]
    assert storage.uri("x.jsonl") == f"file://{tmp_path}/new/dir/x.jsonl"
    discarded = storage.create("y.jsonl")
    discarded.handle.write(b"{}\n")
    discarded.discard()
    assert [p.name for p in (tmp_path / "new" / "dir").iterdir()] == ["x.jsonl"]


class StagedFileSystem(LocalFileSystem):  # type: ignore[misc]
    """A local directory behind a protocol of its own: the object-store path of the storage.

    Like S3 or GCS with `autocommit=False`, a file written is published by `commit()` and
    thrown away by `discard()` (fsspec's local implementation stages it in a temporary file).
    """

    protocol = ("stagedtest",)
    root_marker = "/"

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return t.cast("str", super()._strip_protocol(path.removeprefix("stagedtest://")))


@pytest.fixture
def staged() -> None:
    """The protocol stays registered: its name is this module's own."""
    fsspec.register_implementation("stagedtest", StagedFileSystem, clobber=True)


def test_an_object_store_file_is_published_on_commit_and_never_on_discard(
    tmp_path: Path, staged: None
) -> None:
    storage = BatchStorage(settings(f"stagedtest://{tmp_path}"))
    assert not storage.local
    dropped = storage.create("dropped.jsonl")
    dropped.handle.write(b'{"a":1}\n')
    dropped.discard()
    assert not list(tmp_path.iterdir()), "a discarded upload was published"
    kept = storage.create("kept.jsonl")
    kept.handle.write(b'{"a":1}\n')
    assert not list(tmp_path.iterdir()), "an uncommitted upload is visible"
    kept.commit()
    assert (tmp_path / "kept.jsonl").read_bytes() == b'{"a":1}\n'
    assert storage.uri("kept.jsonl") == f"stagedtest://{tmp_path}/kept.jsonl"


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_clean_up_removes_only_this_taps_parts_of_stopped_processes_on_this_host(
    tmp_path: Path,
) -> None:
    storage = BatchStorage(settings(f"file://{tmp_path}"))
    chosen = storage.settings
    name = f"{chosen.prefix}s-20260101T000000Z-1-abcdef-000001{chosen.suffix}"
    dead, alive, host = _dead_pid(), os.getpid(), storage.host
    files = {
        "stopped": f".{name}.{host}.{dead}.part",
        "running": f".{name}.{host}.{alive}.part",
        "other-host": f".{name}.{host}x.{dead}.part",
        "not-ours": f".notes.txt.{host}.{dead}.part",
        "finished": name,
    }
    for file_name in files.values():
        (tmp_path / file_name).write_text("x")
    storage.remove_stale_parts()
    left = {p.name for p in tmp_path.iterdir()}
    assert left == set(files.values()) - {files["stopped"]}


def test_the_host_in_part_names_is_file_name_safe(tmp_path: Path) -> None:
    storage = BatchStorage(settings(f"file://{tmp_path}"))
    assert storage.host
    assert all(c.isalnum() or c == "-" for c in storage.host)
    assert storage.host.split("-")[0] in socket.gethostname()


# Files and names ----------------------------------------------------------------------------


def _output(tmp_path: Path, **config: t.Any) -> BatchOutput:
    tap = TapLinkedInCRM(
        config={"crm_instance_ids": ["urn:li:crmInstance:(SFDC,00D5e000000AbCdEAF)"]},
        validate_config=False,
    )
    return BatchOutput(tap, BufferedSingerWriter(), settings(f"file://{tmp_path}", **config), set())


def test_two_outputs_of_one_process_in_one_second_never_share_a_file_name(
    tmp_path: Path,
) -> None:
    """A container restarts the tap with the same process id: the run id still differs."""
    first, second = _output(tmp_path), _output(tmp_path)
    assert first.file_name("s") != second.file_name("s")
    assert first.file_name("s") != first.file_name("s")


def test_a_record_json_cannot_encode_fast_still_reaches_the_file(tmp_path: Path) -> None:
    """orjson refuses ints beyond 64 bits; the SDK's encoder writes them, as on the RECORD path."""
    output = _output(tmp_path)
    sink = BatchRecordSink(output, [("s", lambda record: record)])
    out = io.StringIO()
    records = [{"n": 2**70, "s": "ä\x00"}, {"n": 1, "s": None}]
    with contextlib.redirect_stdout(out):
        for record in records:
            sink.write(record)
        sink.flush()
    message = json.loads(out.getvalue())
    assert message["type"] == "BATCH"
    assert message["stream"] == "s"
    (uri,) = message["manifest"]
    with gzip.open(uri.removeprefix("file://")) as handle:
        assert [json.loads(line) for line in handle] == records
