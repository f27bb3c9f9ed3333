"""`file:line: key.path: message` — YAML validation problems as people can act on them.

The bottom of the layering: imports nothing from the bot. `config/bot.yaml` (bot.config) and the watchlists
(bot.watchlists) both report through it, so a problem in either reads the same way:

    config/bot.yaml:71: console.bands[0]: unknown band "stresed" (known: lean, stretched, stressed)
    config/watchlists/alice.yaml:7: symbols[2]: expected a symbol such as BTCUSDT, got 12

Validators with their own wording raise `invalid(message)` or a plain ValueError; either message is shown as
it is. Other pydantic errors get a short description of what was expected and what was found.

Snippets of what a file holds (`show`, `redact`) never echo a secret: a file may be the wrong file (a `.env`
saved as a watchlist), so Telegram-token-shaped text, long base64/hex-ish runs and whatever follows
`token`/`secret`/`key`/`password` and `=` or `:` are replaced by `[redacted]` before anything is cut short.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Iterable

import yaml
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

__all__ = ["Problem", "compose", "describe", "invalid", "line_of", "problems", "redact", "show", "where"]

_INVALID = "invalid"      # the pydantic error type of `invalid(...)`


@dataclass(frozen=True)
class Problem:
    """One problem in one file: `path:line: where: message` (line and where left out when unknown)."""
    path: str
    line: int | None
    where: str | None
    message: str

    def __str__(self) -> str:
        head = f"{self.path}:{self.line}" if self.line else self.path
        return f"{head}: {self.where}: {self.message}" if self.where else f"{head}: {self.message}"

    def short(self) -> str:
        """Without file and line: for chat replies about an edit."""
        return f"{self.where}: {self.message}" if self.where else self.message


def invalid(message: str) -> PydanticCustomError:
    """An error for a pydantic validator to raise whose message is shown exactly as written."""
    return PydanticCustomError(_INVALID, "{message}", {"message": message})


REDACTED = "[redacted]"
_SECRETS = (
    re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}"),                                  # a Telegram bot token
    re.compile(r"(?i)(?<![a-z])((?:api_?key|access_?key|private_?key|key|token|secret|passw(?:or)?d|pwd|"
               r"auth(?:orization)?|bearer)[\w-]*[\"']?\s*[=:]\s*)\S.*"),  # whatever follows `token=` ...
    re.compile(r"(?<![A-Za-z0-9+/_-])(?=[A-Za-z0-9+/_-]*\d)(?=[A-Za-z0-9+/_-]*[A-Za-z])"
               r"[A-Za-z0-9+/_-]{20,}=*"),                                       # long base64/hex-ish runs
)


def redact(text: str) -> str:
    """`text` with anything that looks like a secret replaced by `[redacted]` (see the module docstring)."""
    for i, pattern in enumerate(_SECRETS):
        text = pattern.sub((lambda m: m.group(1) + REDACTED) if i == 1 else REDACTED, text)
    return text


def show(v: Any) -> str:
    """A short YAML-ish rendering of an offending value (never expands containers; secrets redacted first,
    then cut to 40 characters)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        v = redact(v)
        return json.dumps(v if len(v) <= 40 else v[:37] + "...", ensure_ascii=False)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, date):
        return f"the date {v.isoformat()}"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


def where(loc: tuple) -> str | None:
    """A pydantic error location as a key path: `discord.channels[0].bands[1]` (None at the top level)."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + redact(str(part))
    return out or None


def describe(err: dict, known_fields: Iterable[str] | None = None) -> str:
    """What was expected and what was found, for one pydantic error (an item of `ValidationError.errors()`).

    `known_fields`: listed after "unknown field" (watchlists do; the config says "unknown key")."""
    kind, ctx, got = err["type"], err.get("ctx") or {}, show(err.get("input"))
    if kind == _INVALID:
        return err["msg"]
    if kind == "value_error" and ctx.get("error") is not None:
        return str(ctx["error"])
    if kind == "extra_forbidden":
        return f"unknown field (known: {', '.join(known_fields)})" if known_fields is not None else "unknown key"
    if kind.startswith("int_"):
        return f"expected a whole number, got {got}"
    if kind.startswith("bool_"):
        return f"expected true or false, got {got}"
    if kind.startswith("string_type"):
        return f"expected text, got {got}"
    if kind == "string_too_long":
        return f"too long (at most {ctx.get('max_length')} characters)"
    if kind == "list_type":
        return f"expected a list such as [A, B], got {got}"
    if kind == "dict_type":
        return f"expected a mapping (KEY: value), got {got}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}, got {got}"
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}, got {got}"
    return f"{err['msg']}, got {got}"


def compose(text: str) -> yaml.Node | None:
    """The document's node tree (for line numbers), or None when the text is empty or not YAML."""
    if not text:
        return None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def line_of(root: yaml.Node | None, loc: tuple) -> int | None:
    """1-based line of the deepest node along `loc` (a pydantic error location) in the composed document."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if part == "[key]":
            break
        if isinstance(node, yaml.MappingNode):
            hit = None
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    hit = (k, v)
            if hit is None:
                break
            line = hit[0].start_mark.line + 1     # the key's line (collections start on the next line)
            node = hit[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def problems(err: ValidationError, path: str, root: yaml.Node | None, *,
             known_fields: Iterable[str] | None = None, top_level: str | None = None) -> list[Problem]:
    """One Problem per pydantic error, in pydantic's order, located in the document `root` was composed from.

    `top_level`: what to call an error without a key path (None: leave it out)."""
    known = list(known_fields) if known_fields is not None else None
    return [Problem(path, line_of(root, tuple(e["loc"])), where(tuple(e["loc"])) or top_level, describe(e, known))
            for e in err.errors()]
