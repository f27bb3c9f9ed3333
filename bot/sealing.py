"""Sealing: each engine cycle's records hashed into one Merkle root, signed and chained (`bot.receipts` does
the maths, this module decides what is hashed and keeps the key); `verify_store` recomputes all of it from
the stored rows.

Records — what is hashed, exactly as stored:
- a score row: ``{"type": "score", "cycle_ts": T, **the stored payload}`` (the JSON in ``scores.payload``: the
  scored row without the values its ``raw`` repeats, ``records.stored_score``; rows stored before that are full);
- a signal: ``{"type": "signal", "id", "cycle_ts", "symbol", "rule", "kind", "score", "bias", "regime",
  "receipt"}`` — every stored column but ``outcome``, which is written when the signal closes;
- a closing: ``{"type": "closing", "cycle_ts", "signal", "outcome"}`` — a signal's outcome (bot.evaluation),
  sealed in the cycle in which it closed (its `closed_ts`), not in the signal's own cycle.

A cycle's leaves are its scores by symbol, then its signals by id, then its closings by signal id, each SHA-256(0x00 || canonical JSON); the
manifest {cycle_ts, root, count, prev} is signed with Ed25519 and names the previous manifest's hash. A
signal's receipt hash is SHA-256 of its record's canonical JSON: its alert carries the first 12 hex digits.

The signing key: ``BOT_SIGNING_KEY`` (64 hex characters, a raw Ed25519 private key), else the file
``<db>.signing-key`` beside the database, created (mode 0600) on the first run. Never in the database, never
logged (its public half is).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from .database import sqlite_file
from .errors import UserError
from .receipts import (canonical, inclusion_proof, leaf_hash, manifest, merkle_root, public_key_hex, record_hash, sign,
                       verify_inclusion, verify_signature)
from .records import Closing, ManifestRow, ScoredRow, SealedCycle, SignalSeal, StoredManifest, StoredSignal
from .records import stored_score
from .store import SCORES_PRUNED_BEFORE, SCORES_THINNED, Store

log = logging.getLogger(__name__)

SIGNING_KEY_ENV = "BOT_SIGNING_KEY"
KEY_SUFFIX = ".signing-key"
SHORT = 12                      # hex digits of a receipt hash shown in alerts


# ------------------------------------------------------------------------------------------- the key
@dataclass(frozen=True)
class SigningKey:
    key: Ed25519PrivateKey = field(repr=False)
    source: str                 # where it came from: BOT_SIGNING_KEY, the key file's path, or "ephemeral ..."

    @property
    def public_key(self) -> str:
        return public_key_hex(self.key)


def key_path(db_path: str | Path) -> Path | None:
    """`<db>.signing-key` beside a SQLite database (None in memory, and for a server database such as PostgreSQL,
    whose key must come from BOT_SIGNING_KEY: a hosted worker's disk does not last)."""
    db = sqlite_file(str(db_path))
    return None if db is None or db in ("", ":memory:") or db.startswith("file:") else Path(f"{db}{KEY_SUFFIX}")


def _parse_key(text: str, where: str) -> Ed25519PrivateKey:
    t = text.strip()
    if len(t) != 64 or any(c not in string.hexdigits for c in t):
        # never echo it: it is (meant to be) a secret
        raise UserError(f"{where}: not a signing key (expected 64 hex characters, a raw Ed25519 private key)")
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(t))


def load_signing_key(db_path: str | Path, *, create: bool = False,
                     environ: Mapping[str, str] | None = None) -> SigningKey | None:
    """The key that signs `db_path`'s cycles: BOT_SIGNING_KEY, else `<db>.signing-key`; with `create`, a new
    key is made there when neither exists (an in-memory database gets one that lives as long as the process).
    None when there is none and `create` is off. UserError when the one there is not a key."""
    env = (os.environ if environ is None else environ).get(SIGNING_KEY_ENV, "").strip()
    if env:
        return SigningKey(_parse_key(env, SIGNING_KEY_ENV), SIGNING_KEY_ENV)
    path = key_path(db_path)
    if path is None:
        if not create:
            return None
        log.warning("in-memory database: its receipts are signed with a key that ends with this process")
        return SigningKey(Ed25519PrivateKey.generate(), "ephemeral (in-memory database)")
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return _create_key(path) if create else None
    except OSError as e:
        raise UserError(f"{path}: cannot read the signing key: {e.strerror or e}") from None
    if os.stat(path).st_mode & 0o077:
        log.warning("signing key %s can be read by other users: chmod 600 it", path)
    return SigningKey(_parse_key(text, str(path)), str(path))


def _create_key(path: Path) -> SigningKey:
    """A new key in `path`, mode 0600, written whole or not at all (a temporary file linked into place); if
    another process made one first, that one is used."""
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()).hex()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")      # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(raw + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        return load_signing_key(path.with_name(path.name[: -len(KEY_SUFFIX)]), environ={})  # type: ignore[return-value]
    finally:
        os.unlink(tmp)
    signing = SigningKey(key, str(path))
    log.warning("created signing key %s (mode 0600, keep a copy): receipts are signed with public key %s",
                path, signing.public_key)
    return signing


# ------------------------------------------------------------------------------------------- records
def score_record(cycle_ts: int, payload: Mapping[str, Any]) -> dict:
    """A score row's sealed record: its stored payload, typed and timed."""
    return {**payload, "type": "score", "cycle_ts": cycle_ts}


def signal_record(sig: Mapping[str, Any]) -> dict:
    """A signal's sealed record: every stored column but the outcome (written later)."""
    return {"type": "signal", "id": sig["id"], "cycle_ts": sig["ts"], "symbol": sig["symbol"], "rule": sig["rule"],
            "kind": sig["kind"], "score": sig["score"], "bias": sig["bias"], "regime": sig["regime"],
            "receipt": sig["receipt"]}


def closing_record(cycle_ts: int, signal_id: str, outcome: Mapping[str, Any]) -> dict:
    """A closing's sealed record: the outcome of a signal, in the cycle that closed it."""
    return {"type": "closing", "cycle_ts": cycle_ts, "signal": signal_id, "outcome": outcome}


def short(digest: str | None) -> str | None:
    return digest[:SHORT] if digest else None


# ------------------------------------------------------------------------------------------- sealing
@dataclass(frozen=True)
class CycleSeal:
    """A cycle's score leaves, hashed before the commit (outside the store's lock); the store calls it inside the
    commit's transaction with the cycle's signals as stored and the previous manifest's hash."""
    cycle_ts: int
    score_leaves: list[bytes]
    signing: SigningKey
    closing_leaves: list[bytes] = field(default_factory=list)     # after the signals, by signal id
    closing_ids: list[str] = field(default_factory=list)          # their signals' ids, in that order

    def __call__(self, signals: list[StoredSignal], prev: str | None) -> SealedCycle:
        n = len(self.score_leaves)
        signals = sorted(signals, key=lambda g: g["id"])
        hashed = [canonical(signal_record(g)) for g in signals]
        leaves = self.score_leaves + [leaf_hash(c) for c in hashed] + self.closing_leaves
        root = merkle_root(leaves)
        m = manifest(self.cycle_ts, root, len(leaves), prev)
        row = ManifestRow(cycle_ts=self.cycle_ts, manifest=m, hash=record_hash(m),  # type: ignore[typeddict-item]
                          signature=sign(m, self.signing.key), public_key=self.signing.public_key,
                          leaves=b"".join(leaves))
        seals = {}
        for i, (g, c) in enumerate(zip(signals, hashed)):
            path = inclusion_proof(n + i, leaves)
            seals[g["id"]] = SignalSeal(hashlib.sha256(c).hexdigest(),       # = record_hash(record)
                                        {"index": n + i, "size": len(leaves), "path": [p.hex() for p in path]})
        first = n + len(signals)
        closings = {sid: {"index": first + j, "size": len(leaves),
                          "path": [p.hex() for p in inclusion_proof(first + j, leaves)]}
                    for j, sid in enumerate(self.closing_ids)}
        return SealedCycle(row, seals, closings)


@dataclass(frozen=True)
class Sealer:
    """Seals the engine's cycles with one key."""
    signing: SigningKey

    @classmethod
    def for_database(cls, db_path: str | Path) -> Sealer:
        return cls(load_signing_key(db_path, create=True))   # type: ignore[arg-type]

    @property
    def public_key(self) -> str:
        return self.signing.public_key

    def prepare(self, cycle_ts: int, results: list[ScoredRow], closings: list[Closing] = ()) -> CycleSeal:
        """Hash the cycle's score rows, by symbol. The store keeps each as json.dumps(row); its canonical form is
        the row's own (str keys, lists or tuples, finite floats: JSON's round trip changes none of what RFC 8785
        writes, and anything else raises here), so the rows are not serialised and parsed once more for it —
        `verify` recomputes every leaf from the stored text."""
        leaves = []
        for r in sorted(results, key=lambda r: r["symbol"]):
            try:
                leaves.append(leaf_hash(canonical(score_record(cycle_ts, stored_score(r, cycle_ts)))))
            except Exception as e:      # a non-finite number: a bug upstream, and nothing may go unsealed
                raise ValueError(f"cannot seal {r['symbol']}'s score row: {e}") from e
        ordered = sorted(closings, key=lambda c: c["signal"])
        closed = [leaf_hash(canonical(closing_record(cycle_ts, c["signal"], c["outcome"]))) for c in ordered]
        return CycleSeal(cycle_ts, leaves, self.signing, closed, [c["signal"] for c in ordered])


# ------------------------------------------------------------------------------------------- verifying
@dataclass(frozen=True)
class Problem:
    """The first thing that does not verify: where (cycle, record) and what (leaf, root, count, chain,
    signature, proof, missing, leaves)."""
    cycle_ts: int | None
    record: str | None          # "score BTCUSDT", "signal 7KQ2M4XA", or None: the cycle's manifest
    what: str
    detail: str

    def as_dict(self) -> dict:
        return {"cycle_ts": self.cycle_ts, "record": self.record, "what": self.what, "detail": self.detail}


@dataclass
class Verification:
    """What `verify_store` checked, and the first problem (None: everything verifies)."""
    public_key: str | None
    key_source: str
    cycles: int = 0                         # sealed cycles checked (manifest, chain link, signature)
    scores: int = 0                         # score records recomputed
    signals: int = 0                        # signal records recomputed
    closings: int = 0                       # closing records (outcomes) recomputed
    pruned: int = 0                         # sealed cycles whose scores were pruned (their signals checked by proof)
    thinned: int = 0                        # sealed cycles whose scores were thinned (checked as pruned ones)
    unsealed: list[int] = field(default_factory=list)   # cycles stored without a seal (`scan`, or before sealing)
    problem: Problem | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def records(self) -> int:
        return self.scores + self.signals + self.closings

    def as_dict(self) -> dict:
        return {"ok": self.ok, "public_key": self.public_key, "key_source": self.key_source, "cycles": self.cycles,
                "records": self.records, "scores": self.scores, "signals": self.signals, "closings": self.closings,
                "pruned_cycles": self.pruned, "thinned_cycles": self.thinned,
                "unsealed_cycles": len(self.unsealed),
                "problem": self.problem.as_dict() if self.problem else None}


def trusted_key(db_path: str | Path, given: str | None = None) -> tuple[str | None, str]:
    """(public key hex, where it came from) to check seals against: `given` (e.g. the published key), else the
    database's own signing key; (None, why) when there is neither."""
    if given:
        g = given.strip().lower()
        if len(g) != 64 or any(c not in string.hexdigits for c in g):
            raise UserError(f"--key {given!r}: expected a public key of 64 hex characters")
        return g, "--key"
    signing = load_signing_key(db_path)
    if signing is None:
        return None, (f"none: no {SIGNING_KEY_ENV} and no {key_path(db_path)}; checked against the key the manifests "
                      "name (give --key HEX to check against the published one)")
    return signing.public_key, signing.source


def _stored_records(ts: int, rows: list[tuple], signals: list[StoredSignal], closings: list[StoredSignal] = ()
                    ) -> tuple[list[tuple[str, dict]], Problem | None]:
    """(label, record) of a cycle in tree order, or the first row that cannot be a record."""
    out = []
    for symbol, score, bias, regime, payload in rows:
        label = f"score {symbol}"
        try:
            p = json.loads(payload)
        except ValueError as e:
            return out, Problem(ts, label, "leaf", f"its stored payload is not JSON any more ({e})")
        stored = {"symbol": symbol, "score": score, "bias": bias, "regime_key": regime}
        differs = [f"{k} {v!r} (sealed payload: {p.get(k)!r})" for k, v in stored.items()
                   if not isinstance(p, dict) or p.get(k) != v]
        if differs:
            return out, Problem(ts, label, "leaf", "the row's column differs from its sealed payload: " + ", ".join(differs))
        out.append((label, score_record(ts, p)))
    out += [(f"signal {g['id']}", signal_record(g)) for g in signals]
    out += [(f"closing {g['id']}", closing_record(ts, g["id"], g["outcome"])) for g in closings]
    return out, None


def _leaves(ts: int, records: list[tuple[str, dict]]) -> tuple[list[bytes], Problem | None]:
    leaves = []
    for label, rec in records:
        try:
            leaves.append(leaf_hash(canonical(rec)))
        except Exception as e:              # a hand edit that is not canonical JSON any more (NaN, ...)
            return leaves, Problem(ts, label, "leaf", f"the stored record cannot be hashed: {e}")
    return leaves, None


def _check_manifest(m: StoredManifest, prev: tuple[int, str] | None, key: str, key_source: str) -> Problem | None:
    mf, ts = m["manifest"], m["cycle_ts"]
    if m["public_key"] != key:
        return Problem(ts, None, "signature", f"signed by key {m['public_key'][:16]}…, not the trusted key "
                                              f"{key[:16]}… ({key_source})")
    if not verify_signature(mf, m["signature"], key):
        return Problem(ts, None, "signature", "the signature does not verify over the stored manifest "
                                              f"{json.dumps(mf, sort_keys=True)}: it was changed after signing")
    if mf.get("cycle_ts") != ts:
        return Problem(ts, None, "chain", f"the row says cycle {ts}, its signed manifest says {mf.get('cycle_ts')}")
    if prev is None and mf.get("prev") is not None:
        return Problem(ts, None, "chain", f"the first stored seal names a previous manifest {mf['prev'][:16]}… that is "
                                          "not stored (removed?)")
    if prev is not None and mf.get("prev") != prev[1]:
        return Problem(ts, None, "chain", f"its prev is {str(mf.get('prev'))[:16]}…, but the seal before it (cycle "
                                          f"{prev[0]}) hashes to {prev[1][:16]}…: a manifest between them was removed "
                                          "or replaced")
    if m["hash"] != record_hash(mf):
        return Problem(ts, None, "chain", f"its stored hash {m['hash'][:16]}… is not the manifest's hash "
                                          f"{record_hash(mf)[:16]}… (the next seal would chain to the wrong one)")
    return None


@dataclass(frozen=True)
class ScoresGone:
    """Where score rows may be gone with their cycles still sealed: before the pruning horizon, and before the
    thinning horizon but for the cycles thinning keeps (Store.thin_scores)."""
    pruned_before: int
    thinned_before: int
    kept: frozenset[int]

    @classmethod
    def of(cls, store: Store) -> ScoresGone:
        thinned = store.get_meta(SCORES_THINNED) or {"before": 0, "step": 1}
        return cls(int(store.get_meta(SCORES_PRUNED_BEFORE) or 0),   # type: ignore[arg-type]
                   thinned["before"], frozenset(store.kept_score_cycles(thinned["before"], thinned["step"])))

    def why(self, ts: int) -> str | None:
        """'pruned', 'thinned', or None: this cycle's score rows were never removed on purpose."""
        if ts < self.pruned_before:
            return "pruned"
        if ts < self.thinned_before and ts not in self.kept:
            return "thinned"
        return None


def _check_cycle(store: Store, m: StoredManifest, gone: ScoresGone, v: Verification) -> Problem | None:
    mf = m["manifest"]
    ts, root = mf["cycle_ts"], bytes.fromhex(mf["root"])
    rows, signals, closings = store.cycle_score_rows(ts), store.cycle_signals(ts), store.cycle_closings(ts)
    records, problem = _stored_records(ts, rows, signals, closings)
    if problem:
        return problem
    leaves, problem = _leaves(ts, records)
    if problem:
        return problem
    if not rows and len(signals) + len(closings) < mf["count"]:   # the scores are gone: pruned, or removed?
        why = gone.why(ts)
        if why is None:
            kept = " (thinning keeps this cycle's)" if ts < gone.thinned_before else ""
            return Problem(ts, None, "missing", f"the seal covers {mf['count']} records, "
                                                f"{len(signals) + len(closings)} are stored, "
                                                f"and this cycle's scores were never pruned or thinned{kept}")
        if why == "pruned":
            v.pruned += 1
        else:
            v.thinned += 1
    else:
        sealed = m["leaves"]
        sealed_leaves = [sealed[i:i + 32] for i in range(0, len(sealed), 32)] if sealed else None
        if merkle_root(leaves) != root:
            if sealed_leaves is not None and merkle_root(sealed_leaves) == root:   # the kept leaves name the record
                if len(sealed_leaves) == len(leaves):
                    i = next(i for i, (a, b) in enumerate(zip(leaves, sealed_leaves)) if a != b)
                    return Problem(ts, records[i][0], "leaf", f"the stored record hashes to leaf {leaves[i].hex()[:16]}…, "
                                                              f"sealed as {sealed_leaves[i].hex()[:16]}…: it was "
                                                              "changed after sealing")
                have, had = set(leaves), set(sealed_leaves)
                extra = [label for (label, _), leaf in zip(records, leaves) if leaf not in had]
                gone = [i for i, leaf in enumerate(sealed_leaves) if leaf not in have]
                return Problem(ts, extra[0] if extra else None, "count",
                               f"{len(leaves)} records stored, {len(sealed_leaves)} sealed"
                               + (f"; not sealed: {', '.join(extra[:3])}" if extra else "")
                               + (f"; sealed leaf #{gone[0]} has no stored record (removed?)" if gone else ""))
            if len(leaves) != mf["count"]:
                return Problem(ts, None, "count", f"{len(leaves)} records stored, the signed manifest says {mf['count']}")
            return Problem(ts, None, "root", f"the stored records give root {merkle_root(leaves).hex()[:16]}…, the "
                                             f"signed root is {mf['root'][:16]}… (a record was changed, and so were "
                                             "the kept leaf hashes)")
        if sealed_leaves is not None and sealed_leaves != leaves:
            return Problem(ts, None, "leaves", "the records verify, but the kept leaf hashes were changed")
        v.scores += len(rows)
    for (label, rec), g in zip(records[len(rows):], signals):
        problem = _check_signal_seal(ts, label, rec, g, store, root, mf["count"])
        if problem:
            return problem
    v.signals += len(signals)
    for label, rec in records[len(rows) + len(signals):]:
        proof = store.closing_proof(rec["signal"])
        if proof is None or proof["size"] != mf["count"] or not verify_inclusion(
                proof["index"], proof["size"], leaf_hash(canonical(rec)), [bytes.fromhex(p) for p in proof["path"]],
                root):
            return Problem(ts, label, "proof", "its stored inclusion proof does not lead to the signed root (its "
                                               "outcome was changed after sealing?)")
    v.closings += len(closings)
    return None


def _check_signal_seal(ts: int, label: str, rec: dict, g: StoredSignal, store: Store, root: bytes,
                       count: int) -> Problem | None:
    digest = record_hash(rec)
    if g.get("record_hash") is None:
        return Problem(ts, label, "leaf", "no receipt hash is stored with it, though its cycle is sealed")
    if g["record_hash"] != digest:
        return Problem(ts, label, "leaf", f"the stored record hashes to {digest[:16]}…, its receipt hash (the one "
                                          f"its alert carried) is {g['record_hash'][:16]}…")
    proof = store.signal_proof(g["id"])
    if proof is None or proof["size"] != count or not verify_inclusion(
            proof["index"], proof["size"], leaf_hash(canonical(rec)), [bytes.fromhex(p) for p in proof["path"]], root):
        return Problem(ts, label, "proof", "its stored inclusion proof does not lead to the signed root")
    return None


def verify_store(store: Store, key: str | None, key_source: str) -> Verification:
    """Recompute every leaf, root, chain link and signature the store holds; stop at the first problem.

    `key`: the trusted public key (None: the one the first manifest names, which proves consistency only).
    Sealed cycles whose scores were pruned or thinned are checked by their manifest and their signals' and
    closings' proofs, and counted. Cycles
    without a seal are listed (written by `scan`, or before sealing began), except that a signal in an unsealed
    cycle after sealing began is a problem: the engine seals every cycle it commits."""
    with store.reading():
        manifests = store.manifests()
        key = key or (manifests[0]["public_key"] if manifests else None)
        v = Verification(key, key_source)
        gone = ScoresGone.of(store)
        prev: tuple[int, str] | None = None
        for m in manifests:
            v.problem = _check_manifest(m, prev, key, key_source) or _check_cycle(store, m, gone, v)  # type: ignore[arg-type]
            if v.problem:
                return v
            v.cycles += 1
            prev = (m["cycle_ts"], record_hash(m["manifest"]))
        sealed = {m["cycle_ts"] for m in manifests}
        first = min(sealed, default=None)
        with_signals = store.signal_cycle_times()
        for ts in store.cycle_times():
            if ts in sealed:
                continue
            if first is not None and ts > first and ts in with_signals:
                sig = store.cycle_signals(ts)[0]
                v.problem = Problem(ts, f"signal {sig['id']}", "missing",
                                    "its cycle has no seal: its manifest was removed (the engine seals every cycle)")
                return v
            v.unsealed.append(ts)
    return v


# ------------------------------------------------------------------------------------------- one signal
def signal_bundle(store: Store, signal_id: str) -> dict | None:
    """Everything a stranger needs to check one signal with nothing else: the record, its receipt hash, its leaf
    index, the tree size and the proof, the signed manifest, the signature and the public key. None: no such
    signal; the proof and manifest fields are None when its cycle was not sealed."""
    with store.reading():
        sig = store.signal(signal_id)
        if sig is None:
            return None
        m = store.manifest_for(sig["ts"])
        proof = store.signal_proof(sig["id"])
    return {"signal": sig["id"], "record": signal_record(sig), "record_hash": sig.get("record_hash"),
            "leaf_index": proof["index"] if proof else None, "tree_size": proof["size"] if proof else None,
            "proof": proof["path"] if proof else None, "manifest": m["manifest"] if m else None,
            "manifest_hash": m["hash"] if m else None, "signature": m["signature"] if m else None,
            "public_key": m["public_key"] if m else None}


@dataclass(frozen=True)
class Check:
    name: str                   # record hash | inclusion | signature
    ok: bool
    detail: str


def check_bundle(bundle: Mapping[str, Any], key: str | None = None) -> list[Check]:
    """The three checks anyone can run on a bundle: the record hashes to its receipt hash, the proof leads from
    its leaf to the manifest's root, and the manifest's signature verifies with the trusted key (`key`; None:
    the key the bundle names). Every check is reported; a bundle verifies when all are ok."""
    if bundle.get("manifest") is None or bundle.get("proof") is None or bundle.get("record_hash") is None:
        return [Check("sealed", False, "its cycle has no seal (committed before sealing began, or not by the engine)")]
    rec, m = bundle["record"], bundle["manifest"]
    digest = record_hash(rec)
    checks = [Check("record hash", digest == bundle["record_hash"],
                    f"the record hashes to {digest}" + ("" if digest == bundle["record_hash"]
                                                        else f", its receipt hash is {bundle['record_hash']}"))]
    included = bundle["tree_size"] == m["count"] and verify_inclusion(
        bundle["leaf_index"], bundle["tree_size"], leaf_hash(canonical(rec)), [bytes.fromhex(p) for p in bundle["proof"]],
        bytes.fromhex(m["root"]))
    checks.append(Check("inclusion", included, f"leaf {bundle['leaf_index']} of {bundle['tree_size']}, "
                                               f"{len(bundle['proof'])} proof hashes "
                                               + ("lead to the signed root" if included else "do NOT lead to the signed root")
                                               + f" {m['root']}"))
    key = key or bundle["public_key"]
    signed = bundle["public_key"] == key and verify_signature(m, bundle["signature"], key)
    checks.append(Check("signature", signed, f"manifest of cycle {m['cycle_ts']} ({m['count']} records) "
                                             + ("signed by" if signed else "NOT signed by") + f" {key}"))
    return checks


def seal_status(store: Store) -> StoredManifest | None:
    """The last sealed cycle's manifest (None: nothing sealed yet)."""
    return store.last_manifest()
