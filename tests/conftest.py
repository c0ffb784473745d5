"""Shared fixtures: run the real tap process against the sandbox and read what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import typing as t
from dataclasses import dataclass, field

import pytest

if t.TYPE_CHECKING:
    from pathlib import Path


@dataclass
class TapRun:
    """What one `tap-linkedin-crm` process wrote."""

    returncode: int
    stdout: str
    stderr: str
    messages: list[dict[str, t.Any]] = field(default_factory=list)

    def records(self, stream: str) -> list[dict[str, t.Any]]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    @property
    def states(self) -> list[dict[str, t.Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def final_state(self) -> dict[str, t.Any]:
        return self.states[-1] if self.states else {}


def parse_messages(stdout: str) -> list[dict[str, t.Any]]:
    """Singer messages, one JSON object per line; a torn last line (kill -9) is ignored."""
    messages = []
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            messages.append(json.loads(line))
        except json.JSONDecodeError:
            if i != len(lines) - 1:
                raise
    return messages


def tap_command(
    config_path: Path, state_path: Path | None = None, catalog_path: Path | None = None
) -> list[str]:
    cmd = [sys.executable, "-m", "tap_linkedin_crm", "--config", str(config_path)]
    if state_path is not None:
        cmd += ["--state", str(state_path)]
    if catalog_path is not None:
        cmd += ["--catalog", str(catalog_path)]
    return cmd


def write_inputs(
    tmp_path: Path, config: dict[str, t.Any], state: dict[str, t.Any] | None, name: str
) -> tuple[Path, Path | None]:
    config_path = tmp_path / f"{name}-config.json"
    config_path.write_text(json.dumps(config))
    state_path = None
    if state is not None:
        state_path = tmp_path / f"{name}-state.json"
        state_path.write_text(json.dumps(state))
    return config_path, state_path


@pytest.fixture
def run_tap(tmp_path: Path) -> t.Callable[..., TapRun]:
    """Run `python -m tap_linkedin_crm` with a config (and state); return its output."""
    counter = iter(range(1_000_000))

    def run(
        config: dict[str, t.Any],
        state: dict[str, t.Any] | None = None,
        *,
        catalog: dict[str, t.Any] | None = None,
        args: list[str] | None = None,
        timeout: float = 120,
    ) -> TapRun:
        name = f"run{next(counter)}"
        config_path, state_path = write_inputs(tmp_path, config, state, name)
        catalog_path = None
        if catalog is not None:
            catalog_path = tmp_path / f"{name}-catalog.json"
            catalog_path.write_text(json.dumps(catalog))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.run(
            tap_command(config_path, state_path, catalog_path) + (args or []),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        messages = [] if args else parse_messages(proc.stdout)
        return TapRun(proc.returncode, proc.stdout, proc.stderr, messages)

    return run
