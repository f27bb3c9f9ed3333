"""Score rows older than the fine window are thinned to the first cycle of each coarse step (Store.thin_scores),
and `verify` stays honest about it: thinned cycles' manifests, chain and signals still check and are counted, the
kept rows are still recomputed (an edit is caught), and rows gone outside the thinning rule are still missing."""
from __future__ import annotations

import json

from bot.store import SCORES_THINNED, Store

from test_sealing import CALM, HOT, REARM_AT_ONCE, SYMBOLS, TS, Cycles, edit_json, signal_ids, sql, verify

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
