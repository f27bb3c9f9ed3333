"""Each CLI command imports only what it uses (bot/cli.py: the subcommand table imports a command's module when it is
chosen). Every `python -m bot ...` pays for what it imports before it does anything: matplotlib, the database layer,
the exchange client and the chat libraries cost about a second together, so commands that need none of them must
not load them. Checked in a real child process: `bot.cli.main` with the command's arguments, then the names in
`sys.modules`. (How fast: bench/cli_startup.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED_ROWS = "tests/data/seed_rows.json"

# Runs the CLI as `python -m bot` would, then writes the loaded module names to the file given first.
RUN_AND_LIST_MODULES = """
import json, sys
from bot.cli import main
try:
    code = main(sys.argv[2:])
except SystemExit as e:                 # argparse's --help
    code = e.code
with open(sys.argv[1], "w") as f:
    json.dump(sorted(sys.modules), f)
sys.exit(code)
"""
HEAVY = ("matplotlib", "numpy", "sqlalchemy", "alembic", "aiohttp", "httpx", "telegram", "discord", "apscheduler")
COMMAND_MODULES = ("bot.cli_scan", "bot.cli_run", "bot.cli_check", "bot.cli_signals", "bot.cli_liqmap",
                   "bot.cli_watchlists")


def run_cli(tmp_path: Path, *argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    listing = tmp_path / "modules.json"
    out = subprocess.run([sys.executable, "-c", RUN_AND_LIST_MODULES, str(listing), *argv], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    return out, set(json.loads(listing.read_text()))


def top_level(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


@pytest.mark.parametrize("argv, own_module, says", [
    (["--help"], None, "Derivatives Pressure Bot"),
    (["check-config"], "bot.cli_check", "watchlist file(s) checked"),
    (["scan", "--input", SEED_ROWS], "bot.cli_scan", "BTCUSDT"),
    (["score", "BTCUSDT", "--input", SEED_ROWS], "bot.cli_scan", "BTCUSDT"),
])
def test_a_command_without_database_exchange_or_chart_loads_none_of_them(tmp_path, argv, own_module, says):
    out, modules = run_cli(tmp_path, *argv)
    assert out.returncode == 0, out.stderr
    assert says in out.stdout
    assert top_level(modules).isdisjoint(HEAVY), sorted(top_level(modules) & set(HEAVY))
    assert {m for m in COMMAND_MODULES if m in modules} == ({own_module} if own_module else set())


def test_a_command_that_opens_a_database_loads_it(tmp_path):
    """The check above can fail: `signal` opens the store, so SQLAlchemy is loaded (and its error is still reported
    as one line)."""
    out, modules = run_cli(tmp_path, "signal", "nosuch", "--db", str(tmp_path / "bot.db"))
    assert out.returncode == 1
    assert out.stderr.startswith("error: no signal 'nosuch' in ")
    assert "sqlalchemy" in top_level(modules) and "bot.cli_run" in modules


def test_a_database_error_is_one_line_even_though_main_never_imports_the_database_layer(tmp_path):
    """main names SQLAlchemy's error only once a command has loaded it (`bot.cli.loaded`): still one clear line."""
    db = tmp_path / "bot.db"
    db.write_text("not a database")
    out, _ = run_cli(tmp_path, "signal", "1", "--db", str(db))
    assert out.returncode == 1
    assert out.stderr == "error: database: file is not a database\n"
