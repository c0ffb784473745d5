"""Packaging for hosted ELT platforms: wheel and sdist build, the wheel works in a clean venv."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import time
import typing as t
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
#: uv ships with meltano (its default venv backend); it installs far faster than pip.
UV = ROOT / ".venv-meltano" / "bin" / "uv"


def run(cmd: list[str], **kwargs: t.Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], timeout=300)
    wheels = list(out.glob("tap_linkedin_crm-*.whl"))
    sdists = list(out.glob("tap_linkedin_crm-*.tar.gz"))
    assert len(wheels) == 1, list(out.iterdir())
    assert len(sdists) == 1, list(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def test_wheel_has_the_package_data_and_metadata_a_published_tap_has(
    dist: dict[str, Path],
) -> None:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = set(whl.namelist())
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = whl.read(metadata_name).decode()
        entry_points = whl.read(metadata_name.replace("METADATA", "entry_points.txt")).decode()
    assert "tap_linkedin_crm/py.typed" in names
    assert "tap_linkedin_crm/sandbox/scenarios/demo.json" in names
    assert not any(n.startswith("tests/") for n in names)
    for field in ("License-Expression: MIT", "Requires-Python: >=3.11", "Project-URL:"):
        assert field in metadata, field
    assert "Classifier: Typing :: Typed" in metadata
    assert "tap-linkedin-crm = tap_linkedin_crm.tap:TapLinkedInCRM.cli" in entry_points
    assert "linkedin-crm-sandbox = tap_linkedin_crm.sandbox.cli:main" in entry_points


def test_sdist_carries_the_project_files(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for name in (
        "README.md",
        "LICENSE",
        "meltano.yml",
        "catalog.json",
        "pyproject.toml",
        "Makefile",
    ):
        assert name in names, name
    assert "tap_linkedin_crm/tap.py" in names


def test_wheel_installs_in_a_clean_venv_and_its_console_scripts_work(
    dist: dict[str, Path], tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    if UV.exists():
        run([str(UV), "venv", "--quiet", "--python", sys.executable, str(env_dir)])
        python = env_dir / "bin" / "python"
        run([str(UV), "pip", "install", "--quiet", "--python", str(python), str(dist["wheel"])])
    else:
        venv.create(env_dir, with_pip=True)
        python = env_dir / "bin" / "python"
        run([str(python), "-m", "pip", "install", "--quiet", str(dist["wheel"])])
    bin_dir = env_dir / "bin"

    about = json.loads(run([str(bin_dir / "tap-linkedin-crm"), "--about", "--format=json"]).stdout)
    assert about["name"] == "tap-linkedin-crm"
    assert "stream-maps" in about["capabilities"]
    assert "--scenario" in run([str(bin_dir / "linkedin-crm-sandbox"), "--help"]).stdout
    # The installed package is the wheel's, not this checkout.
    where = run(
        [str(python), "-c", "import tap_linkedin_crm; print(tap_linkedin_crm.__file__)"],
        cwd=tmp_path,
    )
    assert str(env_dir) in where.stdout

    # Both scripts together, as a user would try them: sandbox on a free port, tap against it.
    config = tmp_path / "config.json"
    sandbox = subprocess.Popen(
        [
            str(bin_dir / "linkedin-crm-sandbox"),
            *("--port", "0", "--quiet", "--scenario", "demo", "--config-out", str(config)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not config.exists() or not config.read_text().strip().endswith("}"):
            assert sandbox.poll() is None, sandbox.stderr.read() if sandbox.stderr else ""
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
        tap = run([str(bin_dir / "tap-linkedin-crm"), "--config", str(config)], timeout=120)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    records = [
        m
        for m in map(json.loads, tap.stdout.splitlines())
        if m["type"] == "RECORD" and m["stream"] == "crm_data_validation_records"
    ]
    assert len(records) == 250 + 120  # the bundled demo scenario
    shutil.rmtree(env_dir, ignore_errors=True)
