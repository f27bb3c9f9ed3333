"""The CLI end to end, as a user runs it: `bot.cli.main` with its real arguments, output and exit code (what
`python -m bot` runs: `sys.exit(main())`), in this process (`cli`); each kind of exit — 0 with output, 1 with
one error line, 2 for a bad argument, 75 when another process holds the database — is also seen from a real
`python -m bot` subprocess (`bot`)."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "tests" / "data" / "seed_rows.json"


def bot(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m bot ...` as a real process."""
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture
def cli(monkeypatch):
    """`python -m bot ...` in this process: `main(args)` from the repository root, its stdout, stderr and exit code
    (argparse's SystemExit included) as a CompletedProcess. (The logging `main` sets up is put back after each test
    by conftest.)"""
    monkeypatch.chdir(ROOT)

    def run(*args: str) -> subprocess.CompletedProcess:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as e:
                code = e.code
        return subprocess.CompletedProcess(["bot", *args], code, out.getvalue(), err.getvalue())
    return run


def test_scan_input_prints_summary_and_ranked_table():
    out = bot("scan", "--input", str(SEEDS))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Updated ") and "11 symbols ranked" in lines[0] and "Avg stress" in lines[0]
    assert lines[1].split()[:5] == ["#", "Symbol", "Score", "Bias", "Regime"]
    assert lines[2].split()[:4] == ["1", "TAKEUSDT", "58", "LONG"]     # the page's 44 had its hidden 4h change


def test_scan_input_json_speaks_the_reference_apis_vocabulary_and_ours(cli):
    out = cli("scan", "--input", str(SEEDS), "--json", "--bias", "short", "--limit", "2")
    rows = json.loads(out.stdout)
    assert len(rows) == 2 and all(r["direction"] == "SHORT" for r in rows)
    bard = rows[0]
    assert (bard["symbol"], bard["score"], bard["regime"], bard["regimeLabel"]) == (
        "BARDUSDT", 55, "SHORT_RAMP", "Net short bias building")
    assert bard["weights"] == {"oi1hPct": 12, "oi4hPct": 16, "oi24hPct": 28, "fundingRatePct": 28, "basisPct": 16}
    assert bard["components"] == {"oi1hPct": 0.1, "oi4hPct": None, "oi24hPct": -8.7, "fundingRatePct": -0.042,
                                  "basisPct": -0.24}
    assert abs(sum(bard["contributions"].values()) - bard["signed"]) < 0.02 and round(abs(bard["signed"])) == 55
    assert bard["explainer"] == ["Open interest down 8.7% over 24h", "Funding rate -0.042% per interval",
                                 "Perp-index basis -0.24%"]
    for key in ("band", "regime_key", "reason", "quadrant", "warning", "missing", "assumptions", "inputs", "rank"):
        assert key in bard
    assert bard["inputs"]["oi_change_24h"] == -0.087 and rows[0]["score"] >= rows[1]["score"]


def test_score_explains_components_regime_and_missing_inputs(cli):
    unknown = cli("score", "LABX", "--input", str(SEEDS))
    assert unknown.returncode == 1 and "unknown symbol 'LABX' — did you mean LABUSDT?" in unknown.stderr
    out = cli("score", "lab", "--input", str(SEEDS))
    assert out.returncode == 0
    text = out.stdout
    for part in ("score 52 (stretched)", "direction LONG", "Regime: Net long bias building", "Why:",
                 "OI change 24h", "+2.50%", "+4.67", "funding", "+28.00", "basis", "+16.00", "-> score 52, LONG",
                 "Missing inputs:", "Assumed: OI change 4h unknown: its contribution counted as 0"):
        assert part in text, part


def test_bad_input_files_get_specific_messages(tmp_path, cli):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"symbol": "X", "funding_rate": ')
    out = bot("scan", "--input", str(broken))
    assert out.returncode == 1 and "not valid JSON" in out.stderr and "Traceback" not in out.stderr
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"symbol": "AUSDT", "funding_rate": 0.0001}, {"symbol": "BUSDT", "basis": 0.01}]))
    out = cli("scan", "--input", str(wrong))
    assert out.returncode == 1
    assert "row 1 (BUSDT): funding_rate: Field required" in out.stderr
    assert "no such file" in cli("scan", "--input", str(tmp_path / "nope.json")).stderr


def test_scan_against_the_simulated_exchange(tmp_path, cli):
    out = cli("scan", "--simulate", "--sim-symbols", "50", "--db", str(tmp_path / "s.db"), "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) >= 40 and rows == sorted(rows, key=lambda r: -r["score"])
    assert all(r["inputs"]["oi_change_1h"] is not None and r["inputs"]["oi_change_24h"] is not None for r in rows)
    assert "backfilling OI history" in out.stderr          # progress of the cold start


def test_unreachable_exchange_is_a_clear_error(tmp_path, cli):
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("exchange: {max_retries: 0}\n")        # one try: the default's back-off takes ~15 s to give up
    out = cli("--config", str(cfg), "scan", "--exchange-url", "http://127.0.0.1:9", "--db", str(tmp_path / "s.db"))
    assert out.returncode == 1
    assert "exchange request failed" in out.stderr and "network error" in out.stderr
    assert "Traceback" not in out.stderr
    assert [ln for ln in out.stderr.splitlines() if ln.startswith("error:")] == [
        ln for ln in out.stderr.splitlines() if "exchange request failed" in ln and "WARNING" not in ln]
    # (how repeated failures stop a cycle in a few requests with one line: tests/test_exchange_faults.py,
    # test_503_on_everything_stops_within_a_few_requests_and_the_next_cycle_at_its_first, on a fake clock)


def test_check_config_reports_file_line_and_field(tmp_path, cli):
    ok = cli("check-config")
    assert ok.returncode == 0, ok.stderr
    wl = tmp_path / "wl"
    wl.mkdir()
    (wl / "bob.yaml").write_text("symbols: [BTCUSDT, 12]\nquiet_hours: 11pm\n")
    bad_cfg = tmp_path / "bot.yaml"
    bad_cfg.write_text("engine:\n  interval_minutes: -1\n")
    out = cli("--config", str(bad_cfg), "check-config", "--watchlists", str(wl))
    assert out.returncode == 1
    assert f"{bad_cfg}:2: engine.interval_minutes:" in out.stderr
    assert "bob.yaml:1: symbols[1]: expected a symbol such as BTCUSDT, got 12" in out.stderr
    assert "bob.yaml:2: quiet_hours:" in out.stderr



def test_check_config_rejects_unknown_bands_and_regimes_in_alert_filters(tmp_path, cli):
    """A typo in `console:` or a Discord filter used to pass and silently turn those alerts off; now it is an
    error naming file, line and key, like the same typo in a watchlist."""
    wl = tmp_path / "wl"
    wl.mkdir()
    (wl / "bob.yaml").write_text("bands: [stresed]\n")
    cfg = tmp_path / "bot.yaml"
    cfg.write_text("console:\n"
                   "  bands: [stresed]\n"
                   "discord:\n"
                   "  channels:\n"
                   "    - id: 42\n"
                   "      regimes: [long_crowded, moon]\n"
                   "  webhooks:\n"
                   "    - name: desk\n"
                   "      bands:\n"
                   "        - lean\n"
                   "        - hot\n")
    out = cli("--config", str(cfg), "check-config", "--watchlists", str(wl))
    assert out.returncode == 1
    assert f'{cfg}:2: console.bands[0]: unknown band "stresed" — did you mean stressed?' in out.stderr
    assert f'{cfg}:6: discord.channels[0].regimes[1]: unknown regime "moon" (known: short_squeeze_risk,' in out.stderr
    assert f'{cfg}:11: discord.webhooks[0].bands[1]: unknown band "hot" (known: lean, stretched, stressed)' in out.stderr
    assert 'bob.yaml:1: bands[0]: unknown band "stresed" — did you mean stressed?' in out.stderr
    # the same config refuses to run, too (config loading is where it is checked)
    run = cli("--config", str(cfg), "run", "--watchlists", str(wl), "--seconds", "1")
    assert run.returncode == 1 and f"{cfg}:2: console.bands[0]: unknown band" in run.stderr

def test_signal_receipt_from_the_store(tmp_path, cli):
    from bot.store import Store
    store = Store(tmp_path / "s.db")
    receipt = {"rule": "cross:60", "kind": "threshold", "threshold": 60, "prev_score": 55, "score": 62,
               "band": "stressed", "bias": "LONG", "regime": "Long crowded · high funding + rising OI",
               "reason": "r", "components": {"funding": 30.0, "oi": 10.0}, "quadrant": None,
               "inputs": {"funding_rate": 0.001, "oi_change_1h": 0.03}, "missing": [],
               "raw": {"mark_price": 101.0, "index_price": 100.5, "funding_rate": 0.001, "funding_interval_hours": 8.0,
                       "funding_interval_source": "default 8h (not in fundingInfo)", "price_change_24h_pct": 3.2,
                       "oi": {"now": [1764072000000, 1234.5], "1h": [1764068400000, 1200.0], "4h": None, "24h": None}}}
    store.commit_alert_cycle({"ts": 1764072000000, "duration_s": 1, "requests": 3, "weight": 3, "failed": {}}, [], {},
                             [dict(id="ABCD2345", ts=1764072000000, symbol="XUSDT", rule="cross:60", kind="threshold",
                                   score=62, bias="LONG", regime=receipt["regime"], receipt=receipt)], [], [])
    store.close()
    out = cli("signal", "abcd2345", "--db", str(tmp_path / "s.db"))
    assert out.returncode == 0, out.stderr
    assert "XUSDT 62 stressed LONG · crossed 60 (from 55)" in out.stdout
    assert "OI now: 1,234.500 contracts" in out.stdout and "OI  4h: none in tolerance" in out.stdout
    assert "mark 101.0 · index 100.5" in out.stdout
    missing = cli("signal", "NOPE", "--db", str(tmp_path / "s.db"))
    assert missing.returncode == 1 and "no signal 'NOPE'" in missing.stderr


def test_run_and_demo_refuse_a_database_another_engine_holds(tmp_path):
    """One engine per database: while a process holds `<db>.lock`, `run` and `demo` on that database say who
    holds it and exit 75 (EX_TEMPFAIL) at once, before opening the store or the exchange."""
    import os
    from bot.app import engine_holder, hold_engine_lock
    db = tmp_path / "bot.db"
    lock = hold_engine_lock(str(db))
    try:
        assert engine_holder(str(db)) == str(os.getpid())
        message = f"error: another bot is already running on {db} (pid {os.getpid()}); not starting a second engine"
        run = bot("run", "--db", str(db), "--exchange-url", "http://127.0.0.1:9", "--watchlists", str(tmp_path / "wl"))
        assert run.returncode == 75 and message in run.stderr and "Traceback" not in run.stderr
        assert not db.exists(), "the refused run never opened the store"
        demo = bot("demo", "--db", str(db), "--seconds", "20", "--symbols", "20")
        assert demo.returncode == 75 and message in demo.stderr
    finally:
        lock.close()
    assert engine_holder(str(db)) is None                    # released with its holder


def test_scan_on_a_running_engines_database_reads_its_last_cycle_instead_of_competing(tmp_path, cli):
    import os
    from bot.app import hold_engine_lock
    from bot.store import Store
    db = tmp_path / "bot.db"
    lock = hold_engine_lock(str(db))
    try:
        out = cli("scan", "--db", str(db), "--exchange-url", "http://127.0.0.1:9")
        assert out.returncode == 1 and "has not committed a cycle yet" in out.stderr
        from bot.config import Config
        from bot.score import ScoreInputs, score_all
        rows = [r.as_dict() for r in score_all([ScoreInputs(**x) for x in json.loads(SEEDS.read_text())],
                                               Config().score)]
        store = Store(db)
        store.save_cycle(1764072000000, 1.0, 3, 3, rows, {})
        store.close()
        out = cli("scan", "--db", str(db), "--exchange-url", "http://127.0.0.1:9")    # an unreachable exchange:
        assert out.returncode == 0, out.stderr                                         # it is never asked
        assert f"a bot is running on {db} (pid {os.getpid()}): showing its last cycle (2025-11-25 12:00 UTC)" in out.stderr
        assert "11 symbols ranked" in out.stdout.splitlines()[0]
        score = cli("score", "lab", "--db", str(db), "--exchange-url", "http://127.0.0.1:9")
        assert score.returncode == 0 and "score 52 (stretched)" in score.stdout
        store = Store(db)
        assert store.last_cycle()["ts"] == 1764072000000         # no competing cycle was written
        store.close()
    finally:
        lock.close()


def test_input_errors_are_one_line_never_a_traceback(tmp_path, cli, no_pending_garbage):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    nan = tmp_path / "nan.json"
    nan.write_text('[{"symbol": "AUSDT", "funding_rate": NaN, "basis": 0.001}]')
    inf = tmp_path / "inf.json"
    inf.write_text('[{"symbol": "AUSDT", "funding_rate": 0.0001, "basis": Infinity}]')
    (tmp_path / "dbdir").mkdir()
    cases = [
        (("scan", "--input", str(tmp_path)), f"error: {tmp_path}: is a folder, not a JSON file"),
        (("scan", "--input", str(deep)), f"error: {deep}: JSON nested too deeply"),
        (("score", "AUSDT", "--input", str(nan)), f"error: {nan}: row 0 (AUSDT): funding_rate: not a finite number (nan)"),
        (("scan", "--input", str(inf), "--json"), f"error: {inf}: row 0 (AUSDT): basis: not a finite number (inf)"),
        (("scan", "--simulate", "--db", str(tmp_path / "dbdir")), f"error: --db {tmp_path / 'dbdir'}: is a folder"),
        (("scan", "--simulate", "--db", "/proc/no/such/bot.db"), "error: --db /proc/no/such/bot.db: cannot open the database there"),
    ]
    for args, message in cases:
        out = cli(*args)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.startswith(message), (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr


def test_limit_must_be_positive(cli):
    for bad, why in (("-5", "must be 1 or more, got -5"), ("0", "must be 1 or more, got 0"),
                     ("ten", "expected a whole number, got 'ten'")):
        out = (bot if bad == "ten" else cli)("scan", "--input", str(SEEDS), "--limit", bad)   # one real exit 2
        assert out.returncode == 2 and f"argument --limit: {why}" in out.stderr and out.stdout == ""
    rows = json.loads(cli("scan", "--input", str(SEEDS), "--json", "--limit", "3").stdout)
    assert len(rows) == 3
