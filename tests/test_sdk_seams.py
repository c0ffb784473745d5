"""The tap uses public singer-sdk seams only: no private module, member or override.

A private member is a name with a leading underscore (not a dunder) that the SDK defines: a
function or method, a class attribute, or an attribute it sets on `self`. The package may not
import private SDK modules, use such a name unless the package defines that name itself (then it
is its own object's), nor define such a name in a class derived from an SDK class (an override).
"""

from __future__ import annotations

import ast
import importlib.util
import typing as t
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tap_linkedin_crm"


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: defs, class-level assignments, `self.x = ...`."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names.add(target.id)
                elif isinstance(target, ast.Attribute):
                    names.add(target.attr)
    return {name for name in names if _is_private(name)}


def _sdk_private_names() -> set[str]:
    spec = importlib.util.find_spec("singer_sdk")
    assert spec is not None
    assert spec.origin is not None
    root = Path(spec.origin).parent
    names: set[str] = set()
    for path in root.rglob("*.py"):
        names |= _defined_names(ast.parse(path.read_text(encoding="utf-8")))
    return names


def _package_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "sandbox" not in p.parts)


@pytest.fixture(scope="module")
def sdk_private() -> set[str]:
    names = _sdk_private_names()
    assert {"_sync_records", "_write_record_message", "_tap"} <= names  # the scan works
    return names


def _violations(  # noqa: C901, PLR0912 - one branch per kind of use
    path: Path, sdk_private: set[str], ours: set[str]
) -> t.Iterator[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    sdk_names = set()  # names bound to SDK objects by imports in this module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("singer_sdk"):
            parts = (node.module or "").split(".")
            if any(_is_private(part) for part in parts):
                yield f"{path.name}:{node.lineno}: imports private module {node.module}"
            for alias in node.names:
                if _is_private(alias.name):
                    yield f"{path.name}:{node.lineno}: imports private {alias.name}"
                sdk_names.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("singer_sdk") and any(
                    _is_private(part) for part in alias.name.split(".")
                ):
                    yield f"{path.name}:{node.lineno}: imports private module {alias.name}"
        elif (
            isinstance(node, ast.Attribute)
            and _is_private(node.attr)
            and node.attr in sdk_private
            and node.attr not in ours
        ):
            yield f"{path.name}:{node.lineno}: uses the SDK's private {node.attr}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
        if not bases & sdk_names:
            continue
        # In a subclass of an SDK class, defining an SDK private name overrides or shadows it.
        for name in _defined_names(node) & sdk_private:
            yield f"{path.name}: {node.name} overrides the SDK's {name}"


def test_no_module_uses_a_private_singer_sdk_member(sdk_private: set[str]) -> None:
    modules = _package_modules()
    ours: set[str] = set()  # names the package defines: using them is using its own objects
    for path in modules:
        ours |= _defined_names(ast.parse(path.read_text(encoding="utf-8")))
    found = [v for path in modules for v in _violations(path, sdk_private, ours)]
    assert found == []


def test_the_check_catches_each_kind_of_use(tmp_path: Path, sdk_private: set[str]) -> None:
    """The scan is not vacuous: each forbidden pattern is reported."""
    module = tmp_path / "bad.py"
    module.write_text(
        "from singer_sdk import Stream\n"
        "from singer_sdk.helpers._flattening import flatten_record\n"
        "class S(Stream):\n"
        "    def _sync_records(self):\n"
        "        self._write_record_message({})\n",
        encoding="utf-8",
    )
    found = list(_violations(module, sdk_private, {"_sync_records"}))
    assert len(found) == 3, found
