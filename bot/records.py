"""The records that cross the store boundary: what the engine commits, what the store hands back.

TypedDicts (as freqtrade's rpc_types.py does) rather than dataclasses: they are the JSON that is stored
and the dicts that commands and chat adapters already read (`sig["score"]`, `row.get("raw")`), so typing
them changes nothing at runtime. Tuples the store keeps positionally are NamedTuples.

No `from __future__ import annotations` here: TypedDict reads `NotRequired` at class creation.
"""
from dataclasses import dataclass
from typing import Literal, NamedTuple, NotRequired, TypedDict

from .vocabulary import REGIMES

OutboxStatus = Literal["pending", "sending", "sent", "failed"]


class MarketReceipt(TypedDict):
    """The exact exchange values a symbol's score inputs came from (a scored row's `raw`)."""
    time: int                                # exchange time of the snapshot (ms)
    mark_price: float
    index_price: float
    funding_rate: float
    funding_interval_hours: float | None
    funding_interval_source: str             # "fundingInfo" or the default that was assumed
    price_change_24h_pct: float
    last_price: str | None
    oi: dict[str, list | None]               # "now", "1h", "4h", "24h" -> [ts ms, open interest] or None
    price_1h_ago: list | None                # [ts ms, price] or None


class ScoredRow(TypedDict):
    """One symbol's result as stored per cycle: score inputs, score fields and the market receipt."""
    symbol: str
    funding_rate: float
    funding_interval_hours: float | None
    oi_change_1h: float | None
    oi_change_4h: float | None
    oi_change_24h: float | None
    basis: float | None
    price_change_1h: float | None
    price_change_24h: float | None
    score: int
    band: str
    bias: str
    regime: str                              # the label shown to people
    regime_key: str                          # the key the rules work on
    reason: str
    contributions: dict[str, float]          # signed points per input (bot.score.CONTRIBUTIONS)
    signed: float                            # their unrounded sum (+ LONG, - SHORT)
    missing: list[str]
    assumptions: list[str]
    quadrant: str | None
    warning: str | None                      # the OI/price quadrant contradicts the direction
    raw: NotRequired[MarketReceipt | None]


class SignalReceipt(TypedDict):
    """Why a signal fired: the rule, the score and its contributions, the inputs and raw exchange values."""
    rule: str
    kind: str                                # threshold | regime | bias_flip
    threshold: int | None
    prev_score: int | None
    score: int
    band: str
    bias: str
    regime: str
    reason: str
    contributions: dict[str, float]
    quadrant: NotRequired[str | None]
    warning: NotRequired[str | None]
    inputs: dict[str, float | None]
    raw: MarketReceipt | None
    missing: NotRequired[list[str]]


class Closing(TypedDict):
    """A signal closed this cycle: its outcome (bot.evaluation's closing record), committed and sealed with the cycle."""
    signal: str
    outcome: dict


class SignalRecord(TypedDict):
    """A signal as the engine commits it."""
    id: str
    ts: int
    symbol: str
    rule: str
    kind: str
    score: int
    bias: str
    regime: str
    receipt: SignalReceipt


class StoredSignal(SignalRecord):
    """A signal as the store returns it."""
    outcome: dict | None                     # its closing record (bot.evaluation); None while open
    record_hash: NotRequired[str | None]     # its receipt hash, set when its cycle was sealed (None: unsealed)


class Notice(TypedDict):
    """A short message that is not a trade signal (a published root, a LiqMap proximity): delivered through the
    outbox like a digest, never counted as a signal."""
    kind: str                                # what it is about: "root", "liqmap", ...
    title: str                               # one line, shown as the headline
    text: str                                # plain text, may hold several lines


class OutboxEntry(TypedDict):
    """A message to deliver, as the engine queues it."""
    key: str                                 # idempotency key: "{ts}:{recipient}:{channel}:{address}[:held]"
    recipient: str
    channel: str
    address: str
    created: int                             # ms
    due: int                                 # ms
    signal_ids: list[str]
    notice: NotRequired[Notice | None]       # a notice row carries this instead of signal ids ([])


class OutboxRow(OutboxEntry):
    """An outbox row as the store returns it."""
    id: int
    status: OutboxStatus
    attempts: int
    last_error: str | None
    sent: int | None                         # ms
    parts_sent: int                          # parts of its digest the platform accepted (resume after them)
    digest_key: str | None                   # key of the first row of that digest (None until a part is sent)


class CycleRecord(TypedDict):
    """A cycle's bookkeeping, as committed."""
    ts: int
    duration_s: float
    requests: int
    weight: int
    failed: dict[str, str]                   # symbol (or endpoint) -> why


class StoredCycle(CycleRecord):
    scored: int


class Manifest(TypedDict):
    """What a cycle's seal says (bot.receipts.manifest): signed as canonical JSON."""
    cycle_ts: int
    root: str                                # hex Merkle root (RFC 6962) over the cycle's records
    count: int                               # how many records
    prev: str | None                         # the previous manifest's hash (None: the first seal)


class ManifestRow(TypedDict):
    """A cycle's seal as stored: the signed manifest, and the leaf hashes it covers while the scores are kept."""
    cycle_ts: int
    manifest: Manifest
    hash: str                                # record_hash(manifest): the next manifest's `prev`
    signature: str                           # Ed25519 over canonical(manifest), hex
    public_key: str                          # the signing key's public half, hex
    leaves: bytes | None                     # 32-byte leaf hashes in tree order (None once the scores are pruned)


class StoredManifest(ManifestRow):
    seq: int                                 # order of sealing: the chain runs in this order


class InclusionProof(TypedDict):
    """Where a record sits in its cycle's tree, and the sibling hashes up to the root (RFC 6962 PATH)."""
    index: int
    size: int
    path: list[str]                          # hex


class SignalSeal(NamedTuple):
    """A signal's part of its cycle's seal: its receipt hash and its inclusion proof."""
    record_hash: str
    proof: InclusionProof


class SealedCycle(NamedTuple):
    """What sealing a cycle produces for the store to keep in the cycle's transaction."""
    manifest: ManifestRow
    signals: dict[str, SignalSeal]           # signal id -> its seal
    closings: dict[str, InclusionProof] = {}  # signal id -> the inclusion proof of its closing sealed this cycle


class SymbolStateRow(NamedTuple):
    """The rules' per-symbol state as stored (rules.SymbolState(*row) reads it back)."""
    score: int
    bias: str
    regime_key: str
    armed: dict[int, bool]
    regime_cycles: int
    timing: dict | None = None               # rules.SymbolState.timing(): confirmations and re-arming in time


class FiredRow(NamedTuple):
    """When a rule last fired for a recipient and symbol (cooldowns)."""
    recipient: str
    symbol: str
    rule: str
    ts: int                                  # ms


@dataclass(frozen=True, slots=True)
class OIPoint:
    """One open-interest sample of the history the 1h/4h/24h changes are computed from."""
    symbol: str
    ts: int          # ms, exchange time
    oi: float        # contracts (base units)
    price: float | None


# A score row repeats what it already has: `raw` its cycle's time and its funding inputs, `regime` (the label) what
# its `regime_key` names (bot.vocabulary), `warning` its `quadrant` line (it starts with it). The stored (and
# sealed) payload leaves them out when they are equal, so most rows stay under ~1 KB, within one page of the scores
# table (bench/history_size.py); `scored_row` puts them back for every reader. Older rows keep them.
_RAW_REPEATS = ("time", "funding_rate", "funding_interval_hours")
_ROW_ORDER = tuple(ScoredRow.__annotations__)


def stored_score(row: ScoredRow, cycle_ts: int) -> dict:
    """What the store keeps and the seal hashes of a scored row: the row without the values it repeats."""
    out = {k: v for k, v in row.items() if k != "regime" or v != REGIMES.get(row.get("regime_key"))}
    warning, quadrant = row.get("warning"), row.get("quadrant")
    if warning and quadrant and warning.startswith(quadrant + " "):
        out["warning"] = warning[len(quadrant):]              # " under a LONG reading: ..."
    raw = row.get("raw")
    if not isinstance(raw, dict):
        return out
    same = {"time": cycle_ts, "funding_rate": row["funding_rate"],
            "funding_interval_hours": row["funding_interval_hours"]}
    slim = {k: v for k, v in raw.items() if not (k in same and v == same[k] and type(v) is type(same[k]))}
    return {**out, "raw": slim}


def scored_row(payload: dict, cycle_ts: int) -> ScoredRow:
    """A stored payload as the scorer made it: the repeated values back (a no-op on older, full rows)."""
    if "regime" not in payload and payload.get("regime_key") in REGIMES:
        payload = {**payload, "regime": REGIMES[payload["regime_key"]]}
        payload = {k: payload[k] for k in _ROW_ORDER if k in payload} | payload          # the scorer's own order
    warning, quadrant = payload.get("warning"), payload.get("quadrant")
    if warning and quadrant and not warning.startswith(quadrant):
        payload["warning"] = quadrant + warning
    raw = payload.get("raw")
    if isinstance(raw, dict) and any(k not in raw for k in _RAW_REPEATS):
        full = {"time": cycle_ts, "funding_rate": payload.get("funding_rate"),
                "funding_interval_hours": payload.get("funding_interval_hours"), **raw}
        order = [k for k in MarketReceipt.__annotations__ if k in full]          # the receipt's own order
        payload["raw"] = {**{k: full[k] for k in order}, **full}
    return payload  # type: ignore[return-value]
