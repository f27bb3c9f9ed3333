"""The layers hold: CLI -> app -> adapters -> commands -> engine -> market -> core -> config -> vocabulary and
YAML errors, each importing only what is below it (even lazily or under TYPE_CHECKING); the demo market stands
apart. The contracts live in .importlinter (docs/architecture.md explains them); .ci/run checks them too."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(cwd: Path = ROOT) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    env = dict(os.environ, PYTHONPATH=str(cwd))     # the `bot` package found from cwd first
    return subprocess.run([exe, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_are_kept():
    out = lint_imports()
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "3 kept, 0 broken" in out.stdout


def test_a_layer_violation_is_caught(tmp_path):
    """The contract can fail: an adapter importing the composition root, even only under TYPE_CHECKING (in a
    copy of the package, so a concurrent run of the suite never sees the probe)."""
    shutil.copytree(ROOT / "bot", tmp_path / "bot", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    (tmp_path / "bot" / "adapters" / "_layer_probe.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bot.app import Services\n")
    out = lint_imports(tmp_path)
    assert out.returncode != 0 and "bot.adapters._layer_probe -> bot.app" in out.stdout, out.stdout[-2000:]
