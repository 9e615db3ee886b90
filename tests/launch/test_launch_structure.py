"""The launcher's seams (issue 10): no import cycles, the SDK off light paths, one SDK adapter."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from graphlib import CycleError, TopologicalSorter
from importlib.metadata import version
from pathlib import Path

from launch_constants import REPO_ROOT
from packaging.requirements import Requirement
from packaging.version import Version

PACKAGE = REPO_ROOT / "scripts" / "ncf_launch"
ADAPTER = "sdk"


def modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}


def imported_modules(node: ast.AST) -> set[str]:
    """Top-level names of what ``node`` imports (``ncf_launch.x`` -> ``ncf_launch.x``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.module == "ncf_launch":
            return {f"ncf_launch.{alias.name}" for alias in node.names}
        return {node.module}
    return set()


def test_no_import_cycles_between_launcher_modules() -> None:
    graph: dict[str, set[str]] = {}
    for name, tree in modules().items():
        graph[name] = {
            target.removeprefix("ncf_launch.")
            for node in ast.walk(tree)
            for target in imported_modules(node)
            if target.startswith("ncf_launch.")
        } & set(modules())
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {error.args[1]}") from error


def test_function_level_imports_are_only_lazy_sdk_imports_with_a_reason() -> None:
    offenders = []
    for name, tree in modules().items():
        source = (PACKAGE / f"{name}.py").read_text().splitlines()
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            for node in ast.walk(function):
                if not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                targets = imported_modules(node)
                lazy_sdk = targets <= {"ncf_launch.local", "ncf_launch.train", "ncf_launch.tune"}
                before = "\n".join(source[max(0, node.lineno - 4) : node.lineno - 1])
                if not (lazy_sdk and "Lazy:" in before and "SDK" in before):
                    offenders.append(f"{name}.py:{node.lineno} {sorted(targets)}")
    assert not offenders, offenders


def test_private_sdk_members_are_used_only_in_the_adapter() -> None:
    offenders = []
    for name, tree in modules().items():
        if name == ADAPTER:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sagemaker"):
                offenders += [f"{name}: {a.name}" for a in node.names if a.name.startswith("_")]
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                offenders.append(f"{name}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def test_the_cli_and_light_commands_do_not_import_the_sdk() -> None:
    """``ncf --help``, deploy, invoke, batch, cleanup and list never pay the SDK's import time."""
    check = (
        "import sys, ncf_launch.cli; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'sagemaker'); "
        "assert not loaded, loaded[:5]"
    )
    result = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": f"{REPO_ROOT / 'scripts'}:{REPO_ROOT}", "PATH": "/usr/bin:/bin"},
        cwd=Path(REPO_ROOT),
    )
    assert result.returncode == 0, result.stderr


def test_the_declared_sdk_floor_is_the_tested_one() -> None:
    """3.20 crashed ``ncf tune`` and ignored ``--skip-role-check`` (issue 13 item 9)."""
    dependencies = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    launch = dependencies["optional-dependencies"]["launch"]
    (spec,) = [Requirement(line) for line in launch if line.startswith("sagemaker")]
    floor = min(Version(item.version) for item in spec.specifier if item.operator == ">=")
    assert floor >= Version("3.27")
    assert Version(version("sagemaker")) in spec.specifier
