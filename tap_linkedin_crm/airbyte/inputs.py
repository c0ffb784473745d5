"""The files Airbyte hands a command (`--config`, `--catalog`, `--state`), read and checked."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

from tap_linkedin_crm.errors import LinkedInCRMError


class InputFileError(LinkedInCRMError):
    """A `--config`, `--catalog` or `--state` file cannot be read, or is not the JSON expected."""


def read_json(path: str, option: str) -> t.Any:  # noqa: ANN401 - any JSON value
    """The JSON value in the file `path` given as `--<option>`.

    Raises:
        InputFileError: The file cannot be read or is not JSON (the message quotes no content).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        msg = f"Cannot read the --{option} file {path}: {reason}."
        raise InputFileError(msg) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        msg = (
            f"The --{option} file {path} is not valid JSON ({exc.msg} at line {exc.lineno}, "
            f"column {exc.colno})."
        )
        raise InputFileError(msg) from None


def read_config(path: str) -> dict[str, t.Any]:
    """The configuration: a JSON object of settings.

    Raises:
        InputFileError: The file cannot be read, is not JSON, or not a JSON object.
    """
    config = read_json(path, "config")
    if not isinstance(config, dict):
        msg = f"The --config file {path} must hold a JSON object of settings."
        raise InputFileError(msg)
    return config
