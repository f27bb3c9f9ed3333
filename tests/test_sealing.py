"""Every engine cycle is sealed in its commit: its score rows and signals as records, an RFC 6962 root, an
Ed25519-signed manifest chained to the one before. `python -m bot verify` recomputes all of it from the stored
rows and names the first record, manifest or key that no longer verifies; one signal's bundle verifies with the
standalone snippet of docs/receipts.md and nothing else."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from bot import cli, report
from bot.commands import Context, dispatch
from bot.config import Config
from bot.cycle import CycleOutcome
from bot.engine import Engine, Recipient, Route
from bot.errors import UserError
from bot.market import CycleData
from bot.receipts import record_hash
from bot.rules import FilterSubscriber
from bot.score import ScoreInputs, score_all
from bot.sealing import SIGNING_KEY_ENV, Sealer, load_signing_key, signal_bundle, signal_record
from bot.store import SCORES_THINNED, Store

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "DOGEUSDT")
CALM = [ScoreInputs(s, 0.0001, 8, 0.001, 0.002, 0.005, 0.0001, 0.001, 0.002) for s in SYMBOLS]
HOT = [  # BTC 75 LONG · ETH 44 LONG · SOL 63 SHORT · DOGE 86 SHORT: crossings, regimes and bias flips
    ScoreInputs("BTCUSDT", 0.0012, 8, 0.03, -0.03375, 0.15, 0.004, 0.015, 0.05),
    ScoreInputs("ETHUSDT", 0.0003, 8, 0.0075, 0.0, 0.06, 0.002, 0.01, 0.03),
    ScoreInputs("SOLUSDT", -0.0008, 8, -0.025, -0.06, 0.05, -0.003, -0.01, -0.05),
    ScoreInputs("DOGEUSDT", -0.0015, 8, -0.04, -0.08, -0.075, -0.005, -0.02, -0.08),
]
T0 = 1_760_000_000_000
TS = [T0 + 300_000 * i for i in range(1, 5)]          # the four cycles' times
REARM_AT_ONCE = Config.model_validate({"rules": {"rearm_minutes": 0}})   # each HOT after a CALM cycle fires again


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch):
    monkeypatch.delenv(SIGNING_KEY_ENV, raising=False)
    monkeypatch.delenv("BOT_DB_PATH", raising=False)


class Cycles:
    """The real Engine (detect -> route -> one-transaction commit, sealed) fed with fixed inputs, 5 minutes apart,
    with a raw exchange receipt per symbol (as the collector stores it)."""

    def __init__(self, store: Store, cfg: Config | None = None):
        self.cfg, self.ts = cfg or Config(), T0
        console = Recipient("console", FilterSubscriber.from_filter(self.cfg.console), [Route("console", "console")])
        self.engine = Engine(self.cfg, store, None, lambda: [console], source=self)
        self.queue: list[list[ScoreInputs]] = []

    async def next_cycle(self) -> CycleOutcome:
        inputs = self.queue.pop(0)
        self.ts += 300_000
        raw = {i.symbol: {"time": self.ts, "mark_price": 100.5, "index_price": 100.25, "funding_rate": i.funding_rate,
                          "funding_interval_hours": 8.0, "funding_interval_source": "fundingInfo",
                          "price_change_24h_pct": 1.5, "last_price": "100.50",
                          "oi": {"now": [self.ts, 1234.5], "1h": [self.ts - 3_600_000, 1200.0], "4h": None,
                                 "24h": None}, "price_1h_ago": None} for i in inputs}
        return CycleOutcome(self.ts, score_all(inputs, self.cfg.score), CycleData(self.ts, inputs, raw), 0.1, 0, 0, 0)

    async def run(self, *batches: list[ScoreInputs]) -> None:
        for inputs in batches:
            self.queue.append(inputs)
            await self.engine.run_once()


TEST_KEY = "11" * 32      # PostgreSQL has no key file beside it: the key comes from BOT_SIGNING_KEY there


@pytest.fixture
async def db(db_url, monkeypatch) -> Path | str:
    """A database of four sealed cycles (signals in the 2nd and 4th), closed: verify and hand edits open it.
    On each engine: a SQLite file (its key in the file beside it) or a PostgreSQL URL (key from the environment)."""
    if "://" in db_url:
        monkeypatch.setenv(SIGNING_KEY_ENV, TEST_KEY)
    path = Path(db_url) if "://" not in db_url else db_url
    store = Store(path)
    await Cycles(store, REARM_AT_ONCE).run(CALM, HOT, CALM, HOT)
    store.close()
    return path


def verify(db: Path | str, capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(["verify", "--db", str(db), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def sql(db: Path | str, query: str, *params) -> list[tuple]:
    """Raw SQL on either engine, `?` placeholders (a hand edit behind the bot's back)."""
    if "://" not in str(db):
        con = sqlite3.connect(db)
        try:
            rows = con.execute(query, params).fetchall()
            con.commit()
            return rows
        finally:
            con.close()
    import psycopg
    with psycopg.connect(str(db)) as con:
        cur = con.execute(query.replace("?", "%s"), params)
        return cur.fetchall() if cur.description else []


def edit_json(db: Path, table: str, column: str, where: str, params: tuple, change) -> None:
    (text,) = sql(db, f"SELECT {column} FROM {table} WHERE {where}", *params)[0]
    value = json.loads(text)
    change(value)
    sql(db, f"UPDATE {table} SET {column}=? WHERE {where}", json.dumps(value), *params)


def signal_ids(db: Path, ts: int | None = None) -> list[str]:
    q = "SELECT id FROM signals" + (" WHERE ts=?" if ts else "") + " ORDER BY id"
    return [r[0] for r in sql(db, q, *((ts,) if ts else ()))]


# ---------------------------------------------------------------------------------------------- sealing
async def test_every_cycle_is_sealed_in_its_commit_and_verifies(db, capsys):
    store = Store(db)
    try:
        manifests = store.manifests()
        assert [m["cycle_ts"] for m in manifests] == TS
        assert manifests[0]["manifest"]["prev"] is None
        for before, m in zip(manifests, manifests[1:]):                 # the chain
            assert m["manifest"]["prev"] == before["hash"] == record_hash(before["manifest"])
        counts = {ts: len(store.cycle_score_rows(ts)) + len(store.cycle_signals(ts)) for ts in TS}
        assert [m["manifest"]["count"] for m in manifests] == [counts[ts] for ts in TS]
        assert counts[TS[0]] == 4 and counts[TS[1]] > 4                  # scores only; scores and signals
        for sid in signal_ids(db):                                       # each signal keeps its receipt hash
            sig = store.signal(sid)
            assert sig["record_hash"] == record_hash(signal_record(sig))
            assert f"receipt {sig['record_hash'][:12]}" in report.alert_details(sig)
            text = report.receipt_text(sig)
            assert f"Receipt hash: {sig['record_hash']}" in text and f"/verify {sid}" in text
    finally:
        store.close()
    if isinstance(db, Path):
        assert (db.parent / "bot.db.signing-key").stat().st_mode & 0o777 == 0o600
    rc, out, _ = verify(db, capsys)
    n_signals = len(signal_ids(db))
    assert rc == 0, out
    assert f"4 sealed cycles checked: {16 + n_signals} records recomputed (16 scores, {n_signals} signals)" in out
    assert out.rstrip().endswith("OK")
    rc, out, _ = verify(db, capsys, "--json")
    summary = json.loads(out)
    assert rc == 0 and summary["ok"] and summary["cycles"] == 4 and summary["problem"] is None


async def test_a_cycle_committed_again_replaces_its_seal_and_the_chain_stays_whole(tmp_path, capsys):
    store = Store(tmp_path / "bot.db")
    cycles = Cycles(store)
    await cycles.run(CALM, HOT)
    cycles.ts -= 300_000                               # the exchange reports the same time again
    await cycles.run(CALM[:2])
    assert [m["cycle_ts"] for m in store.manifests()] == TS[:2]
    assert len(store.cycle_score_rows(TS[1])) == 2     # the cycle is what was committed last
    store.close()
    assert verify(tmp_path / "bot.db", capsys)[0] == 0


# ---------------------------------------------------------------------------------------------- tampering
def test_an_edited_score_fails_naming_its_cycle_and_symbol(db, capsys):
    edit_json(db, "scores", "payload", "ts=? AND symbol=?", (TS[2], "ETHUSDT"),
              lambda p: p.update(oi_change_1h=0.5))
    rc, out, _ = verify(db, capsys)
    assert rc == 1
    assert f"FAIL cycle 2025-10-09 09:08 UTC (ts {TS[2]}) · score ETHUSDT · leaf: the stored record hashes to leaf" in out
    assert "changed after sealing" in out and "OK" not in out


def test_an_edited_score_column_fails_too(db, capsys):
    sql(db, "UPDATE scores SET score = score + 10 WHERE ts=? AND symbol=?", TS[1], "SOLUSDT")
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[1]}) · score SOLUSDT · leaf: the row's column differs from its sealed payload" in out


def test_an_edited_signal_fails_naming_it(db, capsys):
    sid = signal_ids(db, TS[3])[0]
    edit_json(db, "signals", "receipt", "id=?", (sid,), lambda r: r.update(prev_score=1))
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[3]}) · signal {sid} · leaf:" in out
    rc, out, _ = verify(db, capsys, "--signal", sid)
    assert rc == 1 and "FAIL record hash" in out and "FAIL inclusion" in out and "ok   signature" in out
    assert "Verifies: NO" in out


@pytest.mark.parametrize("field, value", [("count", 99), ("root", "00" * 32), ("prev", None)])
def test_an_edited_manifest_fails_its_signature(db, capsys, field, value):
    edit_json(db, "manifests", "manifest", "cycle_ts=?", (TS[2],), lambda m: m.update({field: value}))
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[2]}) · manifest · signature: the signature does not verify" in out


def test_a_deleted_manifest_breaks_the_chain(db, capsys):
    sql(db, "DELETE FROM manifests WHERE cycle_ts=?", TS[1])
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[2]}) · manifest · chain: its prev is" in out
    assert "a manifest between them was removed or replaced" in out


def test_the_last_manifest_deleted_leaves_its_signals_unsealed(db, capsys):
    sql(db, "DELETE FROM manifests WHERE cycle_ts=?", TS[3])
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[3]}) · signal {signal_ids(db, TS[3])[0]} · missing: its cycle has no seal" in out


def test_deleted_score_rows_are_missing_records(db, capsys):
    sql(db, "DELETE FROM scores WHERE ts=? AND symbol=?", TS[2], "BTCUSDT")
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[2]}) · manifest · count: 3 records stored, 4 sealed; sealed leaf #0 has no stored" in out


def test_a_replaced_key_file_fails_every_signature(db, capsys):
    if not isinstance(db, Path):
        pytest.skip("a key file exists only beside a SQLite database")
    key_file = db.parent / "bot.db.signing-key"
    original = load_signing_key(db).public_key
    key_file.write_text(Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw,
                                                                   NoEncryption()).hex() + "\n")
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[0]}) · manifest · signature: signed by key {original[:16]}…, not the trusted key" in out
    rc, out, _ = verify(db, capsys, "--key", original)            # the published key still vouches for them
    assert rc == 0 and "(trusted: --key)" in out


# ---------------------------------------------------------------------------------------------- one signal
def snippet() -> dict:
    """The standalone verifier of docs/receipts.md, as a reader would copy it."""
    text = (ROOT / "docs" / "receipts.md").read_text()
    code = re.search(r"<!-- verify-snippet -->\n```python\n(.*?)```", text, re.S).group(1)
    assert "from bot" not in code and "import bot" not in code
    namespace: dict = {"__name__": "receipt_snippet"}
    exec(compile(code, "docs/receipts.md", "exec"), namespace)
    return namespace


def test_a_bundle_verifies_with_the_docs_snippet_alone(db, capsys):
    sid = signal_ids(db, TS[3])[-1]
    rc, out, _ = verify(db, capsys, "--signal", sid, "--json")
    assert rc == 0
    bundle = json.loads(out)
    assert set(bundle) >= {"record", "record_hash", "leaf_index", "tree_size", "proof", "manifest", "signature",
                           "public_key"}
    key = load_signing_key(db).public_key
    assert bundle["public_key"] == key
    verify_bundle = snippet()["verify_bundle"]
    verify_bundle(bundle, key)                                       # raises on any failure
    for tamper, error in [(lambda b: b["record"]["receipt"].update(score=1), ValueError),
                          (lambda b: b.update(record_hash=record_hash(b["record"] | {"score": 1})), ValueError),
                          (lambda b: b["proof"].reverse() if len(b["proof"]) > 1 else b["proof"].append("00" * 32),
                           ValueError),
                          (lambda b: b.update(leaf_index=b["leaf_index"] - 1), ValueError),
                          (lambda b: b["manifest"].update(prev="00" * 32), InvalidSignature)]:
        forged = json.loads(json.dumps(bundle))
        tamper(forged)
        with pytest.raises(error):
            verify_bundle(forged, key)
    with pytest.raises(InvalidSignature):                            # someone else's key
        verify_bundle(bundle, Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw,
                                                                                     PublicFormat.Raw).hex())
    rc, out, _ = verify(db, capsys, "--signal", sid)
    assert rc == 0 and f"Receipt hash: {bundle['record_hash']}" in out and "Verifies: yes" in out
    assert f"Leaf {bundle['leaf_index']} of {bundle['tree_size']}; proof:" in out


def test_an_unknown_or_unsealed_signal(tmp_path, capsys):
    store = Store(tmp_path / "old.db")         # a signal committed without a seal (as before sealing existed)
    receipt = {"rule": "cross:35", "kind": "threshold", "threshold": 35, "prev_score": 30, "score": 40,
               "band": "stretched", "bias": "LONG", "regime": "r", "reason": "r", "contributions": {}, "inputs": {},
               "raw": None}
    store.commit_alert_cycle({"ts": T0, "duration_s": 0, "requests": 0, "weight": 0, "failed": {}}, [], {},
                             [dict(id="OLDSIG22", ts=T0, symbol="XUSDT", rule="cross:35", kind="threshold", score=40,
                                   bias="LONG", regime="r", receipt=receipt)], [], [])
    assert "Receipt hash: none — not sealed" in report.receipt_text(store.signal("OLDSIG22"))
    assert "receipt" not in report.alert_details(store.signal("OLDSIG22"))
    store.close()
    rc, out, _ = verify(tmp_path / "old.db", capsys, "--signal", "oldsig22")
    assert rc == 1 and "FAIL sealed: its cycle has no seal" in out
    rc, out, _ = verify(tmp_path / "old.db", capsys)
    assert rc == 0 and "1 cycles stored without a seal" in out
    rc, _, err = verify(tmp_path / "old.db", capsys, "--signal", "NOPE")
    assert rc == 1 and "error: no signal 'NOPE'" in err


# ---------------------------------------------------------------------------------------------- retention, old files
async def test_pruned_cycles_keep_their_signals_verifiable(db, capsys):
    store = Store(db)
    store.prune_history(TS[2])                                       # the scores of the first two cycles go
    assert store.cycle_score_rows(TS[1]) == [] and store.manifest_for(TS[1])["leaves"] is None
    store.close()
    rc, out, _ = verify(db, capsys)
    assert rc == 0 and "4 sealed cycles checked" in out and "2 of them had their scores pruned" in out
    sid = signal_ids(db, TS[1])[0]
    assert verify(db, capsys, "--signal", sid)[0] == 0                # the proof was kept with the signal
    edit_json(db, "signals", "receipt", "id=?", (sid,), lambda r: r.update(score=1))
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[1]}) · signal {sid} · leaf:" in out


async def test_scores_removed_by_hand_are_not_taken_for_pruned(db, capsys):
    sql(db, "DELETE FROM scores WHERE ts=?", TS[0])
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[0]}) · manifest · missing: the seal covers 4 records, 0 are stored" in out


async def test_an_old_database_file_gets_the_new_table_and_columns(tmp_path, capsys):
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE cycles (ts INTEGER PRIMARY KEY, duration_s REAL, requests INTEGER, weight INTEGER,
                             scored INTEGER, failed TEXT);
        CREATE TABLE signals (id TEXT PRIMARY KEY, ts INTEGER NOT NULL, symbol TEXT NOT NULL, rule TEXT NOT NULL,
                              kind TEXT NOT NULL, score INTEGER NOT NULL, bias TEXT NOT NULL, regime TEXT NOT NULL,
                              receipt TEXT NOT NULL, outcome TEXT);
        INSERT INTO cycles VALUES (1, 0, 0, 0, 0, '{}');""")
    con.close()
    store = Store(path)
    await Cycles(store).run(CALM, HOT)
    store.close()
    rc, out, _ = verify(path, capsys)
    assert rc == 0 and "2 sealed cycles checked" in out and "1 cycles stored without a seal" in out


# ---------------------------------------------------------------------------------------------- the key
def test_the_key_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch, capsys):
    db = tmp_path / "k.db"
    assert load_signing_key(db) is None and not (tmp_path / "k.db.signing-key").exists()
    rc, _, err = verify(db, capsys, "--public-key")
    assert rc == 1 and "no signing key for" in err and "the first run creates" in err
    made = load_signing_key(db, create=True)
    assert made.source == str(tmp_path / "k.db.signing-key")
    assert load_signing_key(db).public_key == made.public_key                 # kept, not made again
    rc, out, _ = verify(db, capsys, "--public-key")
    assert rc == 0 and out.strip() == made.public_key
    secret = "11" * 32
    monkeypatch.setenv(SIGNING_KEY_ENV, secret)
    from_env = load_signing_key(db)
    assert from_env.source == SIGNING_KEY_ENV and from_env.public_key != made.public_key
    assert secret not in repr(from_env)
    monkeypatch.setenv(SIGNING_KEY_ENV, "not-a-key-" + "ab" * 20)
    with pytest.raises(UserError) as e:
        load_signing_key(db)
    assert str(e.value).startswith(f"{SIGNING_KEY_ENV}: not a signing key") and "not-a-key" not in str(e.value)


async def test_the_app_signs_with_the_key_it_loaded_and_never_logs_it(make_services, monkeypatch, caplog):
    secret = "22" * 32
    monkeypatch.setenv(SIGNING_KEY_ENV, secret)
    svc = make_services()
    assert svc.signing.source == SIGNING_KEY_ENV and svc.queries.public_key == svc.signing.public_key
    assert not list(Path(svc.store.path).parent.glob("*.signing-key"))        # the environment's key: no file
    assert secret not in caplog.text


# ---------------------------------------------------------------------------------------------- /verify in chat
async def test_verify_in_chat_shows_the_key_the_last_seal_and_a_signals_proof(make_services):
    svc = make_services()
    cycles = Cycles(svc.store, svc.cfg)
    cycles.engine.sealer = Sealer(svc.signing)                         # as run_bot builds it
    ctx = Context(queries=svc.queries, user_id="u", platform="telegram")
    reply = await dispatch("verify", ctx)
    assert svc.signing.public_key in reply.text and "No cycle is sealed yet." in reply.text
    await cycles.run(CALM, HOT)
    reply = await dispatch("verify", ctx)
    last = svc.store.last_manifest()
    assert f"Last sealed cycle: 2025-10-09 09:03 UTC (ts {TS[1]})" in reply.text and last["manifest"]["root"] in reply.text
    sid = svc.store.cycle_signals(TS[1])[0]["id"]
    ctx.args = [sid.lower()]
    reply = await dispatch("verify", ctx)
    assert not reply.error and reply.title == f"Receipt {sid} · verifies" and "Verifies: yes" in reply.text
    name, content = reply.document
    bundle = json.loads(content)
    assert name == f"receipt-{sid}.json" and bundle == signal_bundle(svc.store, sid)
    snippet()["verify_bundle"](bundle, svc.signing.public_key)
    ctx.args = ["NOPE"]
    reply = await dispatch("verify", ctx)
    assert reply.error and "No signal 'NOPE'" in reply.text


# ---------------------------------------------------------------------------------------------- the demo
@pytest.mark.process
def test_the_demo_database_verifies_and_an_edited_score_is_named(tmp_path, sim_start_ms):
    """The issue's end-to-end check: `python -m bot demo --seconds 40 --db d.sqlite`, then `verify` passes; one
    stored score edited by hand, `verify` fails naming that cycle and symbol."""
    from datetime import datetime, timezone
    env = {k: v for k, v in os.environ.items() if k not in (SIGNING_KEY_ENV, "BOT_DB_PATH")}
    db = tmp_path / "d.sqlite"
    start = datetime.fromtimestamp(sim_start_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    demo = subprocess.run([sys.executable, "-m", "bot", "demo", "--seconds", "40", "--db", str(db), "--start", start],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert (tmp_path / "d.sqlite.signing-key").exists()

    def run_verify() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "bot", "verify", "--db", str(db)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)

    ok = run_verify()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    cycles = int(re.search(r"(\d+) sealed cycles checked", ok.stdout).group(1))
    assert cycles >= 3 and ok.stdout.rstrip().endswith("OK")
    ts, symbol = sql(db, "SELECT ts, symbol FROM scores ORDER BY ts DESC, symbol LIMIT 1 OFFSET 7")[0]
    edit_json(db, "scores", "payload", "ts=? AND symbol=?", (ts, symbol), lambda p: p.update(funding_rate=0.01))
    bad = run_verify()
    assert bad.returncode == 1
    assert f"(ts {ts}) · score {symbol} · leaf: the stored record hashes to leaf" in bad.stdout, bad.stdout


# ---------------------------------------------------------------------------------------------- thinned score rows
# Score rows older than the fine window are thinned to the first cycle of each coarse step (Store.thin_scores),
# and `verify` stays honest about it: thinned cycles' manifests, chain and signals still check and are counted, the
# kept rows are still recomputed (an edit is caught), and rows gone outside the thinning rule are still missing.
STEP = 600_000        # 10 minutes: with cycles 5 minutes apart, TS[1] and TS[2] share a step (TS[1] is its first)


async def sealed_db(tmp_path):
    path = tmp_path / "bot.db"
    store = Store(path)
    await Cycles(store, REARM_AT_ONCE).run(CALM, HOT, HOT, CALM)   # signals in the 2nd cycle and in the 3rd
    store.close()
    return path


def thin(db, before_ms: int) -> int:
    store = Store(db)
    try:
        return store.thin_scores(before_ms, STEP)
    finally:
        store.close()


async def test_old_cycles_keep_score_rows_only_on_each_coarse_step(tmp_path):
    db = await sealed_db(tmp_path)
    assert [ts // STEP for ts in TS] == [TS[0] // STEP, TS[1] // STEP, TS[1] // STEP, TS[3] // STEP]
    assert thin(db, TS[3]) == len(SYMBOLS)                          # TS[2]'s rows: the second cycle of its step
    assert thin(db, TS[3]) == 0                                     # a second pass finds nothing more
    counts = dict(sql(db, "SELECT ts, COUNT(*) FROM scores GROUP BY ts"))
    assert counts == {TS[0]: 4, TS[1]: 4, TS[3]: 4}
    leaves = dict(sql(db, "SELECT cycle_ts, leaves IS NULL FROM manifests"))
    assert leaves == {TS[0]: 0, TS[1]: 0, TS[2]: 1, TS[3]: 0}      # the thinned cycle's leaf hashes went with it
    assert json.loads(sql(db, "SELECT value FROM meta WHERE key=?", SCORES_THINNED)[0][0]) == \
        {"before": TS[3], "step": STEP}
    assert "," in sql(db, "SELECT payload FROM scores LIMIT 1")[0][0] and ", " not in \
        sql(db, "SELECT payload FROM scores LIMIT 1")[0][0]        # compact JSON: no blanks stored


async def test_verify_counts_thinned_cycles_and_checks_their_signals(tmp_path, capsys):
    db = await sealed_db(tmp_path)
    thinned_signals = signal_ids(db, TS[2])
    assert thinned_signals                                          # the thinned cycle has signals to check
    thin(db, TS[3])
    rc, out, _ = verify(db, capsys)
    assert rc == 0, out
    assert "4 sealed cycles checked" in out and "(12 scores," in out
    assert "1 of them had their score rows thinned" in out and "pruned" not in out
    assert verify(db, capsys, "--signal", thinned_signals[0])[0] == 0    # its own proof still leads to the root
    edit_json(db, "signals", "receipt", "id=?", (thinned_signals[0],), lambda r: r.update(score=1))
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[2]}) · signal {thinned_signals[0]} · leaf:" in out


async def test_an_edit_to_a_kept_row_is_still_caught(tmp_path, capsys):
    db = await sealed_db(tmp_path)
    thin(db, TS[3])
    edit_json(db, "scores", "payload", "ts=? AND symbol=?", (TS[1], "ETHUSDT"), lambda p: p.update(oi_change_1h=0.5))
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[1]}) · score ETHUSDT · leaf: the stored record hashes to leaf" in out


async def test_a_kept_cycles_rows_removed_by_hand_are_missing_not_thinned(tmp_path, capsys):
    db = await sealed_db(tmp_path)
    thin(db, TS[3])
    sql(db, "DELETE FROM scores WHERE ts=?", TS[1])                 # the first cycle of its step: thinning keeps it
    rc, out, _ = verify(db, capsys)
    assert rc == 1 and f"(ts {TS[1]}) · manifest · missing:" in out
    assert "never pruned or thinned (thinning keeps this cycle's)" in out


async def test_stored_payloads_leave_out_what_raw_repeats_and_older_full_rows_still_verify(tmp_path, capsys,
                                                                                          monkeypatch):
    import bot.sealing
    import bot.store
    db = tmp_path / "bot.db"
    store = Store(db)
    cycles = Cycles(store, REARM_AT_ONCE)
    full = lambda row, ts: dict(row)                                # as rows were stored (and sealed) before
    monkeypatch.setattr(bot.store, "stored_score", full)
    monkeypatch.setattr(bot.sealing, "stored_score", full)
    await cycles.run(CALM, HOT)
    monkeypatch.undo()
    await cycles.run(CALM, HOT)
    raws = {ts: json.loads(p)["raw"] for ts, p in sql(db, "SELECT ts, payload FROM scores WHERE symbol='BTCUSDT'")}
    assert {"time", "funding_rate", "funding_interval_hours"} <= raws[TS[1]].keys()           # the older, full row
    assert not {"time", "funding_rate"} & raws[TS[3]].keys()                                   # the slim one
    assert raws[TS[3]]["funding_interval_hours"] == 8.0     # kept: the row's own is 8, an int (nothing is lost)
    for ts, row in store.score_payloads("BTCUSDT", 0):              # every reader gets the scorer's row back
        assert row["raw"]["time"] == ts and row["raw"]["funding_rate"] == row["funding_rate"]
        assert row["raw"]["funding_interval_hours"] == row["funding_interval_hours"] == 8.0
        assert list(row["raw"]) == list(raws[TS[1]])                # ... in the receipt's own order
    ts, latest = store.latest_scores()
    assert ts == TS[3] and all(r["raw"]["time"] == TS[3] for r in latest)
    store.close()
    rc, out, _ = verify(db, capsys)
    assert rc == 0 and "4 sealed cycles checked" in out and "(16 scores," in out


def test_a_stored_payload_reads_back_as_the_scorers_row_exactly():
    from bot.config import Config
    from bot.records import scored_row, stored_score
    from bot.score import ScoreInputs, score_all
    ts = TS[0]
    inputs = HOT + CALM + [ScoreInputs("XUSDT", 0.0009, 4.0, 0.08, 0.1, 0.2, 0.004, -0.02, -0.1)]
    rows = [dict(r.as_dict(), raw={"time": ts, "mark_price": 1.5, "index_price": 1.4, "funding_rate": r.inputs.funding_rate,
                                   "funding_interval_hours": r.inputs.funding_interval_hours, "oi": {"now": None}})
            for r in score_all(inputs, Config().score)]
    assert any(r["warning"] for r in rows)                          # the quadrant-prefixed warning is exercised
    for row in rows:
        stored = json.loads(json.dumps(stored_score(row, ts)))
        assert "regime" not in stored and "time" not in stored["raw"] and len(json.dumps(stored)) < len(json.dumps(row))
        back = scored_row(stored, ts)
        assert back == row and list(back) == list(row) and list(back["raw"]) == list(row["raw"])
        assert scored_row(json.loads(json.dumps(row)), ts) == row   # an older, full row reads as it was
