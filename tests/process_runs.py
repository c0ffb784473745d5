"""Tap processes the `run_tap` fixture cannot start: settings from the environment, odd limits."""

from __future__ import annotations

import json
import subprocess
import sys
import typing as t
from dataclasses import dataclass

from faultkit import tap_env

if t.TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: Environment variables of the tap's settings (`--config ENV`) start with this.
ENV_PREFIX = "TAP_LINKEDIN_CRM_"


@dataclass
class ProcessRun:
    """What one tap process wrote, read as the `run_tap` fixture's `TapRun` reads it."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict[str, t.Any]]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def records(self, stream: str) -> list[dict[str, t.Any]]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    def schema(self, stream: str) -> dict[str, t.Any]:
        return next(
            m["schema"] for m in self.messages if m["type"] == "SCHEMA" and m["stream"] == stream
        )

    @property
    def final_state(self) -> dict[str, t.Any]:
        states = [m["value"] for m in self.messages if m["type"] == "STATE"]
        return states[-1] if states else {}


def run_process(
    args: list[str],
    env: Mapping[str, str] | None = None,
    *,
    preexec_fn: Callable[[], None] | None = None,
    timeout: float = 60,
) -> ProcessRun:
    """Run `python -m tap_linkedin_crm ARGS`; `env` is added to an environment without any
    `TAP_LINKEDIN_CRM_*` variable of the caller's."""
    environment = {k: v for k, v in tap_env().items() if not k.startswith(ENV_PREFIX)}
    environment.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-m", "tap_linkedin_crm", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        check=False,
        preexec_fn=preexec_fn,
    )
    return ProcessRun(proc.returncode, proc.stdout, proc.stderr)


def as_environment(config: Mapping[str, t.Any]) -> dict[str, str]:
    """A config as `TAP_LINKEDIN_CRM_<SETTING>` variables: strings as they are, the rest JSON."""
    return {
        ENV_PREFIX + name.upper(): value if isinstance(value, str) else json.dumps(value)
        for name, value in config.items()
    }
