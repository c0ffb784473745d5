"""The Dockerfile against the package, since no image is built here (no Docker daemon).

Airbyte's image contract: AIRBYTE_ENTRYPOINT set and equal to the (absolute) ENTRYPOINT, a
non-root `airbyte` user; plus ours: the entrypoint is our console script, the Python of the base
image is one the package supports, every file copied exists, the label carries our version.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from pathlib import Path

from conftest import ROOT
from packaging.specifiers import SpecifierSet

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def values(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def key_values(keyword: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for rest in values(keyword):
        for item in shlex.split(rest):
            key, _, value = item.partition("=")
            pairs[key] = value
    return pairs


def test_entrypoint_is_our_console_script_and_airbyte_entrypoint_equals_it() -> None:
    (entrypoint,) = values("ENTRYPOINT")
    command = json.loads(entrypoint)
    assert len(command) == 1
    path = Path(command[0])
    assert path.is_absolute()
    assert path.name in PROJECT["scripts"]
    assert PROJECT["scripts"][path.name] == "tap_linkedin_crm.airbyte.entrypoint:main"
    assert key_values("ENV")["AIRBYTE_ENTRYPOINT"] == command[0]
    # pip installs console scripts of a package installed under /usr/local into /usr/local/bin.
    assert "--prefix=/install" in " ".join(values("RUN"))
    assert any("--from=build /install /usr/local" in c for c in values("COPY"))
    assert str(path.parent) == "/usr/local/bin"
    # Both protocols: the Singer tap's script is installed beside it.
    assert "tap-linkedin-crm" in PROJECT["scripts"]


def test_runs_as_the_non_root_airbyte_user() -> None:
    (user,) = values("USER")
    assert user == "airbyte"
    assert any(
        "adduser" in run and "--uid 1000" in run and " airbyte" in run for run in values("RUN")
    )


def test_base_image_python_is_one_the_package_supports() -> None:
    bases = [rest.split()[0] for rest in values("FROM")]
    assert bases, "no FROM"
    versions = set()
    for base in bases:
        match = re.fullmatch(r"python:(\d+\.\d+)(-[\w.-]+)?", base)
        assert match, f"base image {base} is not an official python image"
        versions.add(match.group(1))
    (version,) = versions  # build and runtime use the same Python
    assert version in SpecifierSet(PROJECT["requires-python"])
    assert f"Programming Language :: Python :: {version}" in PROJECT["classifiers"]


def test_every_file_copied_exists_and_the_build_has_what_pyproject_needs() -> None:
    copied: list[str] = []
    for rest in values("COPY"):
        if rest.startswith("--from="):
            continue
        *sources, _ = shlex.split(rest)
        copied += sources
    for source in copied:
        assert (ROOT / source).exists(), source
    needed = {"pyproject.toml", PROJECT["readme"], *PROJECT["license-files"]}
    needed |= set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert needed <= set(copied)
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    excluded = [(p, n) for p in patterns for n in needed if fnmatch.fnmatch(n, p)]
    assert not excluded, f".dockerignore excludes what the build copies: {excluded}"


def test_labels_name_the_connector_and_carry_the_package_version() -> None:
    labels = key_values("LABEL")
    assert labels["io.airbyte.name"].endswith("source-linkedin-crm")
    assert labels["io.airbyte.version"] == PROJECT["version"]
