"""What ships and what is declared: the wheel holds the bot and its demo market but never the test fakes,
and every third-party module the code imports is a declared dependency."""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCAL_MODULES = {"bot", "fakes", "conftest", "_common", "_simserver", "__future__", "pgcluster"}


@functools.cache                        # three tests read the same files
def _imports(path: Path) -> frozenset[str]:
    """Absolute modules imported by a file (including imports inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return frozenset(found)


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / folder).rglob("*.py"))]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(*extras: str) -> set[str]:
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        reqs += PYPROJECT["project"]["optional-dependencies"][extra]
    return {_norm(re.match(r"[A-Za-z0-9._-]+", r).group()) for r in reqs}


def _undeclared(files: list[Path], declared: set[str]) -> dict[str, str]:
    dists = _distributions()
    missing: dict[str, str] = {}
    for path in files:
        for module in _imports(path):
            top = module.split(".")[0]
            if top in sys.stdlib_module_names or top in LOCAL_MODULES:
                continue
            names = {_norm(d) for d in dists.get(top, [top])}
            if not names & declared:
                missing[top] = str(path.relative_to(ROOT))
    return missing


# The import scans share `_imports`' cache: on one xdist worker the files are parsed once, not once per worker.
scans_imports = pytest.mark.xdist_group("import-scan")


@scans_imports
def test_runtime_imports_are_declared_dependencies():
    assert _undeclared(_files("bot"), _declared()) == {}


@scans_imports
def test_test_and_bench_imports_are_declared_with_the_test_extra():
    assert _undeclared(_files("fakes", "tests", "bench"), _declared("test")) == {}


@scans_imports
def test_the_package_never_imports_the_fakes_and_they_take_only_the_runner_from_it():
    assert {str(p.relative_to(ROOT)) for p in _files("bot") if any(m.split(".")[0] == "fakes" for m in _imports(p))} == set()
    for path in _files("fakes"):
        assert {m for m in _imports(path) if m.split(".")[0] == "bot"} <= {"bot.demo_market.serve"}, path
    for path in _files("bot/demo_market"):
        assert {m for m in _imports(path) if m.split(".")[0] == "bot"} <= {
            "bot.demo_market.market", "bot.demo_market.serve", "bot.demo_market.liquidations"}, path


@pytest.mark.slow
def test_wheel_ships_the_demo_market_but_not_the_fakes(tmp_path):
    # build from a copy of the working tree so no build/ or *.egg-info lands in the repository
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis",
        "data", "*.db", "*.db-*"))
    out = tmp_path / "wheel"
    # the test extra's setuptools builds it (a fresh isolated build env would cost ~1.5 s more, same wheel)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), "."], cwd=src, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    [wheel] = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        metadata = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert (src / "fakes" / "telegram_server.py").exists()  # present in the tree, yet not shipped:
    assert [n for n in names if n.startswith(("fakes/", "tests/", "bench/"))] == []
    assert [n for n in names if Path(n).name in ("telegram_server.py", "discord_server.py")] == []
    for module in ("market.py", "binance_server.py", "serve.py"):
        assert f"bot/demo_market/{module}" in names
    assert "bot/sim/market.py" not in names
    assert {"bot/migrations/env.py", "bot/migrations/versions/0001_baseline.py"} <= set(names)   # run at start
    requires = {_norm(re.match(r"Requires-Dist: ([A-Za-z0-9._-]+)", line).group(1))
                for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert {"aiohttp", "yarl"} <= requires
