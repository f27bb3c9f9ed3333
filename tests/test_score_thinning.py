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
