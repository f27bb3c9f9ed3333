"""Replies and alert digests as Discord messages: embeds coloured by bias, within Discord's limits.

Pure functions (no client, no I/O): `reply_messages` for a command's `Reply`, `digest_messages` for an outbox
`Digest`. Each message is a dict {"content"?, "embeds": [embed dicts], "files"?: [(name, bytes)]} that the bot
senders, the slash-command bridge and the webhook sender all send as is.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any, Iterable

from ... import report
from ...commands import Reply
from ...outbox import Digest

# ---- Discord limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits) ------
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TOTAL = 6000
MAX_TITLE = 256
MAX_DESCRIPTION = 4096
MAX_FIELDS = 25
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_FOOTER = 2048

COLOURS = {"LONG": 0x2ECC71, "SHORT": 0xE74C3C, "NEUTRAL": 0x95A5A6}
INFO_COLOUR = 0x5865F2          # answers without a bias (tables, help)
ERROR_COLOUR = 0xE67E22
FULL_ALERT_EMBEDS = 10          # a digest shows this many alerts in full, the rest as one line each


def colour(bias: str | None) -> int:
    return COLOURS.get((bias or "").upper(), INFO_COLOUR)


_MD = re.compile(r"([\\*_~`|])")


def escape(text: str) -> str:
    """Discord markdown escaped (symbols like 1000PEPE_USDT, regime keys with underscores)."""
    text = _MD.sub(r"\\\1", text)
    return re.sub(r"(?m)^([#>])", r"\\\1", text)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def split_lines(text: str, limit: int) -> list[str]:
    """Chunks of at most `limit` characters, split at line boundaries (a longer line is cut)."""
    chunks, cur = [], ""
    for line in text.split("\n"):
        while len(line) > limit:
            if cur:
                chunks.append(cur)
                cur = ""
            chunks.append(line[:limit])
            line = line[limit:]
        if cur and len(cur) + 1 + len(line) > limit:
            chunks.append(cur)
            cur = line
        else:
            cur = f"{cur}\n{line}" if cur else line
    if cur or not chunks:
        chunks.append(cur)
    return chunks


def code_blocks(text: str, limit: int = MAX_DESCRIPTION, header: str | None = None) -> list[str]:
    """Text in ``` code blocks of at most `limit` characters; `header` (a table's) repeats in each."""
    text = text.replace("```", "ʼʼʼ")
    overhead = len("```\n\n```") + (len(header) + 1 if header else 0)
    out = []
    for chunk in split_lines(text, limit - overhead):
        body = f"{header}\n{chunk}" if header else chunk
        out.append(f"```\n{body}\n```")
    return out


def _aligned(text: str) -> bool:
    """Column-aligned text (explain, receipts) keeps its layout only in a code block."""
    return any(line.startswith("  ") for line in text.split("\n"))


def text_blocks(text: str) -> list[str]:
    if not text:
        return []
    if _aligned(text):
        return code_blocks(text)
    return split_lines(escape(text), MAX_DESCRIPTION)


def embed_size(e: dict) -> int:
    """Characters Discord counts toward the 6000 per message."""
    n = len(e.get("title", "")) + len(e.get("description", ""))
    n += sum(len(f["name"]) + len(f["value"]) for f in e.get("fields", []))
    n += len((e.get("footer") or {}).get("text", "")) + len((e.get("author") or {}).get("name", ""))
    return n


def pack_description(blocks: Iterable[str], limit: int = MAX_DESCRIPTION) -> list[str]:
    """Blocks (each within `limit`) joined by blank lines into as few descriptions as fit."""
    out, cur = [], ""
    for b in blocks:
        if cur and len(cur) + 2 + len(b) > limit:
            out.append(cur)
            cur = b
        else:
            cur = f"{cur}\n\n{b}" if cur else b
    if cur:
        out.append(cur)
    return out


def pack_messages(embeds: list[dict], content: str | None = None) -> list[dict]:
    """Embeds grouped into messages of at most 10 embeds and 6000 characters; `content` on the first."""
    messages: list[dict] = []
    cur: list[dict] = []
    size = 0
    for e in embeds:
        n = embed_size(e)
        if cur and (len(cur) >= MAX_EMBEDS or size + n > MAX_EMBED_TOTAL):
            messages.append({"embeds": cur})
            cur, size = [], 0
        cur.append(e)
        size += n
    if cur or not messages:
        messages.append({"embeds": cur})
    if content:
        messages[0]["content"] = truncate(content, MAX_CONTENT)
    return messages


def reply_messages(reply: Reply) -> list[dict]:
    """A command's Reply as Discord messages: {"content"?, "embeds": [dict], "files": [(name, bytes)]}.

    Text goes to embed descriptions (aligned text and tables in code blocks), coloured by the reply's bias;
    an image becomes an attachment shown in the first embed, a document an attachment."""
    blocks = text_blocks(reply.text)
    if reply.table is not None:
        t = reply.table
        if t.caption:
            blocks += split_lines(escape(t.caption), MAX_DESCRIPTION)
        if t.rows:
            lines = report.format_table(t.header, t.rows).split("\n")
            blocks += code_blocks("\n".join(lines[1:]), header=lines[0])
    descriptions = pack_description(blocks) or [""]
    col = ERROR_COLOUR if reply.error else colour(reply.bias)
    embeds = []
    for i, d in enumerate(descriptions):
        e: dict[str, Any] = {"type": "rich", "color": col}
        if d:
            e["description"] = d
        if i == 0 and reply.title:
            e["title"] = truncate(reply.title, MAX_TITLE)
        elif i > 0 and reply.title:
            e["title"] = truncate(f"{reply.title} (continued)", MAX_TITLE)
        embeds.append(e)
    files: list[tuple[str, bytes]] = []
    if reply.image is not None:
        files.append(("chart.png", reply.image))
        embeds[0]["image"] = {"url": "attachment://chart.png"}
    if reply.document is not None:
        files.append(reply.document)
    if not any(e.get("description") or e.get("title") or e.get("image") for e in embeds):
        embeds[0]["description"] = "Done."
    messages = pack_messages(embeds)
    messages[0]["files"] = files
    return messages


def _iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).isoformat()


def signal_embed(sig: dict) -> dict:
    """One alert: title, colour by bias, score/band/regime, key inputs, and the signal id."""
    rec = sig["receipt"]
    i = rec.get("inputs") or {}
    fields = [
        {"name": "Score", "value": f"{sig['score']} ({rec.get('band', '?')})"
                                   + (f" · was {rec['prev_score']}" if rec.get("prev_score") is not None else ""),
         "inline": True},
        {"name": "Bias", "value": str(rec.get("bias", sig.get("bias"))), "inline": True},
        {"name": "Rule", "value": escape(str(rec.get("rule", sig.get("rule")))), "inline": True},
        {"name": "Regime", "value": escape(str(rec.get("regime", sig.get("regime")))), "inline": False},
        {"name": "Open interest", "value": f"1h {report.pct(i.get('oi_change_1h'))} · 4h "
                                           f"{report.pct(i.get('oi_change_4h'))} · 24h {report.pct(i.get('oi_change_24h'))}",
         "inline": False},
        {"name": "Funding", "value": f"{report.pct(i.get('funding_rate'), 4)} / {i.get('funding_interval_hours') or 8:g}h",
         "inline": True},
        {"name": "Basis", "value": report.pct(i.get("basis"), 3), "inline": True},
        {"name": "Price", "value": f"1h {report.pct(i.get('price_change_1h'))} · 24h "
                                   f"{report.pct(i.get('price_change_24h'))}", "inline": True},
    ]
    context = report.alert_context(sig)
    if context:
        fields.append({"name": "OI and price", "value": escape(context), "inline": False})
    for f in fields:
        f["name"], f["value"] = truncate(f["name"], MAX_FIELD_NAME), truncate(f["value"] or "—", MAX_FIELD_VALUE)
    e = {"type": "rich", "title": truncate(report.alert_title(sig), MAX_TITLE), "color": colour(sig.get("bias")),
         "fields": fields[:MAX_FIELDS], "footer": {"text": f"signal {sig['id']} · /signal {sig['id']} for the receipt"
                                                   + (f" · receipt {sig['record_hash'][:12]}" if sig.get("record_hash") else "")}}
    if rec.get("reason"):
        e["description"] = truncate(escape(str(rec["reason"])), MAX_DESCRIPTION)
    if sig.get("ts"):
        e["timestamp"] = _iso(sig["ts"])
    return e


def delivery_ref(key: str) -> str:
    """A short marker of an outbox key, shown in the footer so a restart can tell whether it was posted."""
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def digest_messages(digest: Digest) -> list[dict]:
    """An outbox digest as messages: the top alerts as full embeds, the rest one line each; the last embed's
    footer carries the `ref` of every key. Deterministic (same digest, same messages): the outbox resumes a
    digest after the messages it recorded as posted. A notice is one embed: its title and text."""
    if digest.notice:
        return pack_messages([_with_ref({"type": "rich", "color": INFO_COLOUR,
                                         "title": truncate(digest.notice["title"], MAX_TITLE),
                                         "description": truncate(escape(digest.notice["text"]), MAX_DESCRIPTION)},
                                        digest)], None)
    sigs = digest.signals
    n = len(sigs)
    content = f"🔔 {n} alert{'s' if n != 1 else ''}" + (" (held during quiet hours)" if digest.held else "")
    embeds = [signal_embed(s) for s in sigs[:FULL_ALERT_EMBEDS]]
    rest = sigs[FULL_ALERT_EMBEDS:]
    if rest:
        lines = [f"• {escape(report.alert_title(s))} — signal {s['id']}" for s in rest]
        for j, d in enumerate(split_lines("\n".join(lines), MAX_DESCRIPTION)):
            embeds.append({"type": "rich", "color": INFO_COLOUR, "description": d,
                           "title": f"… and {len(rest)} more" + (" (continued)" if j else "")})
    if not embeds:
        embeds.append({"type": "rich", "color": INFO_COLOUR, "description": "No alert details (signals pruned)."})
    _with_ref(embeds[-1], digest)
    return pack_messages(embeds, content)


def _with_ref(last: dict, digest: Digest) -> dict:
    """The `ref` of every key of the digest in this (its last) embed's footer."""
    refs = " ".join(delivery_ref(k) for k in digest.keys)
    footer = (last.get("footer") or {}).get("text", "")
    last["footer"] = {"text": truncate(f"{footer} · ref {refs}" if footer else f"ref {refs}", MAX_FOOTER)}
    return last
