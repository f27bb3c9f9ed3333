"""A Telegram Bot-API-shaped HTTP server on loopback, for tests and the offline demo.

It speaks the Bot API wire format (``{"ok": true, "result": ...}`` /
``{"ok": false, "error_code": ..., "description": ...}``) well enough that the
*real* python-telegram-bot ``Application`` (22.x) can poll it, send to it,
upload to it and download files from it.

Pointing PTB at it
==================
::

    server = TelegramSimServer(token="123456:TEST-TOKEN")
    root = await server.start()                     # e.g. "http://127.0.0.1:41234"
    app = (
        Application.builder()
        .token("123456:TEST-TOKEN")
        .base_url(f"{root}/bot")                    # PTB appends the token: {root}/bot<token>/<method>
        .base_file_url(f"{root}/file/bot")          # PTB appends the token: {root}/file/bot<token>/<file_path>
        .build()
    )
    await app.initialize(); await app.start()
    await app.updater.start_polling(poll_interval=0, timeout=1)
    server.push_message(1001, "/ping")
    await server.wait_for(lambda calls: any(c["text"] == "pong" for c in calls))
    ...
    await app.updater.stop(); await app.stop(); await app.shutdown()
    await server.stop()

Do NOT set ``local_mode(True)``: that makes PTB read ``getFile`` paths from the
local disk and send local files as ``file://`` URIs instead of uploading them.

Standalone (offline demo)::

    python -m fakes.telegram_server --port 8082 --token 123:ABC

prints the API root (``http://127.0.0.1:8082``) as its first stdout line and
logs every message the bot sends to stderr. Drive it with the JSON control API
under ``/sim/`` (no token needed)::

    curl -s localhost:8082/sim/push_message -d '{"chat_id": 1001, "text": "/ping"}'
    curl -s localhost:8082/sim/push_callback -d '{"chat_id": 1001, "message_id": 2, "data": "x"}'
    curl -s localhost:8082/sim/add_file -d '{"file_name": "w.yaml", "text": "a: 1"}'
    curl -s localhost:8082/sim/fail_next -d '{"method": "sendMessage", "error_code": 429,
         "description": "Too Many Requests: retry after 3", "retry_after": 3}'
    curl -s localhost:8082/sim/set_admins -d '{"chat_id": -100123, "user_ids": [42]}'
    curl -s 'localhost:8082/sim/sent?chat_id=1001'     curl -s 'localhost:8082/sim/calls?method=sendMessage'

PTB 22.8 wire quirks found (what this server has to accept)
===========================================================
* HTTP/1.1 via httpx (``HTTPXRequest(http_version="1.1")`` is PTB's default; HTTP/2
  needs the ``http2`` extra and a h2 server - aiohttp only speaks 1.1 anyway).
  PTB keeps two connection pools: one (size 1) for ``getUpdates``, one for the rest.
* Every request is a POST. Parameterless calls (``getMe``, ``deleteWebhook``, ``close``)
  have an empty body and no real Content-Type. Otherwise, without files PTB sends
  ``application/x-www-form-urlencoded`` - NOT JSON - where every non-string value
  is JSON-encoded into the form field (``chat_id=1001``, ``reply_markup={"inline_keyboard": ...}``,
  ``disable_notification=true``). With files it sends ``multipart/form-data``:
  plain fields as above, the file of ``sendPhoto``/``sendDocument`` directly in the
  ``photo``/``document`` part (filename + guessed mimetype), and secondary files
  (thumbnails, media groups) as ``attach://<name>`` references to other parts.
  This server also accepts JSON bodies and query strings. In ``calls`` the form
  values are JSON-decoded back (except free-text fields such as ``text``), and
  uploaded files appear as ``bytes``.
* ``start_polling(timeout=1)`` sends ``getUpdates`` with ``timeout=1`` (int seconds) and
  ``offset=0`` first, then ``offset=<last update_id + 1>``; ``allowed_updates`` only if given.
  PTB's HTTP read timeout for it is ``read_timeout + timeout``. ``updater.stop()`` cancels the
  pending long poll (this server then cancels the handler) and sends one last
  ``getUpdates(offset=<last+1>, timeout=0)`` to confirm what it handled.
* The ``getUpdates`` pool has ONE connection: a single Bot cannot run two long polls at once
  (the second waits and dies with ``TimedOut``/pool timeout). To provoke Telegram's 409
  ``Conflict`` use two bot instances - which is exactly the production failure mode.
* ``Bot.get_file`` prefixes ``file_path`` with ``base_file_url + token`` - unless
  ``file_path`` names an existing local file (``Path(p).is_file()``), in which case PTB
  reads the local file instead of downloading. Paths here are
  ``documents/sim_file_N.ext`` so this never collides with the working tree.
* ``TelegramError`` strips a leading ``"Bad Request: "`` from the description and
  capitalises the rest: ``"Bad Request: message is too long"`` ->
  ``BadRequest("Message is too long")``. Error mapping is by HTTP status: 400 ->
  ``BadRequest``, 403 -> ``Forbidden``, 401/404 -> ``InvalidToken`` (so an unknown
  method surfaces as ``InvalidToken``/``EndPointNotFound``), 409 -> ``Conflict``,
  anything with ``parameters.retry_after`` -> ``RetryAfter`` regardless of status.
* ``RetryAfter.retry_after`` is an ``int`` plus a ``PTBDeprecationWarning`` unless the
  env var ``PTB_TIMEDELTA=1`` is set, in which case it is a ``timedelta``.
* PTB's ``Message.reply_text`` quotes (sends ``reply_parameters``) only in groups by default;
  in private chats it is a plain ``sendMessage``.
* Handler exceptions inside PTB do not reach the test; they are logged by PTB ("No error
  handlers are registered"). A missing reply therefore shows up as a ``wait_for`` timeout,
  whose message lists the recent calls.

Telegram behaviour emulated (because our bugs live there)
=========================================================
* Text > 4096 characters (Unicode code points, counted after entity parsing and
  stripping) -> 400 ``message is too long``; caption > 1024 -> ``message caption is too
  long``; empty -> ``message text is empty``.
* ``parse_mode`` HTML is parsed like tdlib does (tags b/strong/i/em/u/ins/s/strike/del/
  a/code/pre/span class="tg-spoiler"/tg-spoiler/blockquote; unsupported or unclosed tag,
  stray ``<`` -> 400 ``can't parse entities: ...`` with tdlib's wording and byte offsets).
  Deliberately STRICTER than Telegram: a bare ``&`` that does not start ``&lt;``/``&gt;``/
  ``&amp;``/``&quot;``/``&#NN;`` is an error (Telegram keeps it literally) - unescaped ``&``
  almost always means unescaped external data that will eventually contain ``<``.
  Set ``server.strict_ampersand = False`` for Telegram's lenient behaviour.
  ``MarkdownV2`` (reserved characters, unclosed entities) is checked too; legacy ``Markdown``
  is refused (``unsupported parse_mode``): the bot never sends it. Stdlib ``html.parser`` was
  not used because it silently treats ``a < b`` and unclosed tags as data, which Telegram rejects.
* ``editMessageText`` with identical text/entities/markup -> 400 ``message is not
  modified: ...``; omitting ``reply_markup`` on an edit removes the keyboard (as in
  Telegram); editing unknown messages / other users' messages fails.
* Inline keyboards: ``callback_data`` must be 1-64 bytes (``BUTTON_DATA_INVALID``), a
  button needs an action. ``setMyCommands`` validates names ``[a-z0-9_]{1,32}``.
* Uploads: empty file -> ``file must be non-empty``; a photo that is not a PNG ->
  ``IMAGE_PROCESS_FAILED`` (catches BytesIO not rewound after savefig). Stricter than Telegram,
  which also takes JPEG/GIF/WEBP/BMP: the bot only sends PNG charts.
* ``answerCallbackQuery`` twice or with an unknown id -> ``query is too old ...``.
* Replying to a missing message -> ``message to be replied not found``.
* A second concurrent ``getUpdates`` terminates the first with 409 Conflict.
* ``message_id`` increases per chat (shared by user and bot messages), ``date`` is int
  seconds, every sent message is returned as a full Message object.
* ``set_admins(chat, [a, b, ...])``: the FIRST id is reported as ``creator`` (owner),
  the others as ``administrator``; anyone else is ``member``.

Flood limits are emulated only when asked (``bot_rate``/``chat_rate``, ``--bot-rate 30 --chat-rate 1``: a token
bucket per bot, one message a second per chat, 429 with ``retry_after`` beyond; ``/sim/stats`` counts refusals);
otherwise inject them with ``fail_next``. Not emulated: webhooks (only ``deleteWebhook``,
which polling sends), ``@channelusername`` chat ids (400 ``chat not found``), chat-not-found for
unknown chats (any numeric chat id is accepted; positive ids are private chats, ``-100...``
supergroups, other negative ids groups), url/mention entities in pushed messages (only
``bot_command`` entities are generated), ``editMessageCaption``, ``deleteMessage``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import itertools
import json
import logging
import math
import mimetypes
import re
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.demo_market.serve import run_until_signalled

__all__ = ["TelegramSimServer", "ApiError", "parse_formatted_text"]

log = logging.getLogger(__name__)

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_DOWNLOAD_SIZE = 20 * 1024 * 1024
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
QUERY_TOO_OLD = "Bad Request: query is too old and response timeout expired or query ID is invalid"
CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"

# Form/query values that are free text and must never be JSON-decoded.
_STRING_PARAMS = frozenset(
    {
        "text", "caption", "parse_mode", "callback_query_id", "inline_message_id", "file_id",
        "url", "action", "language_code", "description", "short_description", "name", "title",
        "query", "data", "emoji", "business_connection_id", "message_effect_id", "ip_address",
        "secret_token", "photo", "document", "audio", "video", "animation", "voice", "sticker",
        "video_note", "thumbnail", "filename", "sticker_set_name", "custom_title",
    }
)
_CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
        "upload_document", "choose_sticker", "find_location", "record_video_note",
        "upload_video_note",
    }
)
_BUTTON_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)


class ApiError(Exception):
    """An error response of the simulated Bot API."""

    def __init__(self, error_code: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def body(self) -> dict:
        out: dict[str, Any] = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def _bad(description: str) -> ApiError:
    if not description.startswith("Bad Request: "):
        description = "Bad Request: " + description
    return ApiError(400, description)


# --------------------------------------------------------------------------- text parsing

_SPACES = " \t\r\n\v\f"


def _u16(s: str) -> int:
    """Length in UTF-16 code units (what Telegram entity offsets count)."""
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


def _byte_offset(text: str, i: int) -> int:
    return len(text[:i].encode("utf-8", "surrogatepass"))


class _EntityParseError(Exception):
    pass


class _Builder:
    """Accumulates plain text and entities with UTF-16 offsets."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.offset = 0
        self.entities: list[dict] = []

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.offset += _u16(s)

    def entity(self, etype: str, start: int, **extra: Any) -> None:
        length = self.offset - start
        if length > 0:
            ent = {"type": etype, "offset": start, "length": length}
            ent.update({k: v for k, v in extra.items() if v})
            self.entities.append(ent)

    def text(self) -> str:
        return "".join(self.parts)


_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "a": "text_link", "code": "code", "pre": "pre", "span": "spoiler", "tg-spoiler": "spoiler",
    "blockquote": "blockquote",
}
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_ENTITY_RE = re.compile(r"&(?:#([0-9]+)|#[xX]([0-9a-fA-F]+)|([a-zA-Z]+));?")


def _decode_html_entity(text: str, i: int) -> tuple[str, int] | None:
    m = _ENTITY_RE.match(text, i)
    if not m:
        return None
    dec, hexa, name = m.groups()
    if name is not None:
        ch = _NAMED_ENTITIES.get(name)
        if ch is None:
            return None
        return ch, m.end()
    try:
        code = int(dec) if dec is not None else int(hexa, 16)
    except ValueError:
        return None
    if not (0 < code <= 0x10FFFF) or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), m.end()


def _parse_html(text: str, strict_ampersand: bool = True) -> tuple[str, list[dict]]:
    """tdlib-compatible HTML entity parser (plus strict '&')."""
    out = _Builder()
    stack: list[tuple[str, str, int, bool]] = []  # tag, argument, utf16 start, expandable
    n = len(text)
    i = 0

    def err(msg: str) -> _EntityParseError:
        return _EntityParseError(msg)

    while i < n:
        c = text[i]
        if c == "&":
            dec = _decode_html_entity(text, i)
            if dec is None:
                if strict_ampersand:
                    raise err(
                        f"Unescaped '&' at byte offset {_byte_offset(text, i)}: use &amp; "
                        "(simulator strict mode; Telegram would keep it literally)"
                    )
                out.add("&")
                i += 1
            else:
                out.add(dec[0])
                i = dec[1]
            continue
        if c != "<":
            out.add(c)
            i += 1
            continue

        begin = i
        i += 1
        if i >= n or text[i] != "/":
            # start tag
            j = i
            while j < n and text[j] not in _SPACES and text[j] != ">":
                j += 1
            if j >= n:
                raise err(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
            tag = text[i:j].lower()
            if tag not in _HTML_TAGS:
                raise err(f'Unsupported start tag "{tag}" at byte offset {_byte_offset(text, begin)}')
            i = j
            argument = ""
            span_class = None
            expandable = False
            while text[i] != ">":
                while i < n and text[i] in _SPACES:
                    i += 1
                if i >= n:
                    raise err(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
                if text[i] == ">":
                    break
                name_begin = i
                while i < n and text[i] not in _SPACES and text[i] not in "=>":
                    i += 1
                attr = text[name_begin:i].lower()
                if not attr:
                    raise err(f'Empty attribute name in the tag "{tag}" at byte offset {_byte_offset(text, begin)}')
                while i < n and text[i] in _SPACES:
                    i += 1
                if i >= n:
                    raise err(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
                if text[i] != "=":
                    if tag == "blockquote" and attr == "expandable":
                        expandable = True
                        continue
                    raise err(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                        f"at byte offset {_byte_offset(text, begin)}"
                    )
                i += 1
                while i < n and text[i] in _SPACES:
                    i += 1
                if i >= n:
                    raise err(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
                if text[i] not in "\"'":
                    token_begin = i
                    while i < n and text[i].isascii() and (text[i].isalnum() or text[i] in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if i < n and text[i] not in _SPACES and text[i] != ">":
                        raise err(f"Unexpected end of name token at byte offset {_byte_offset(text, token_begin)}")
                else:
                    quote = text[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&":
                            dec = _decode_html_entity(text, i)
                            if dec is not None:
                                chars.append(dec[0])
                                i = dec[1]
                                continue
                        chars.append(text[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(chars)
                if i >= n:
                    raise err(f"Unclosed start tag at byte offset {_byte_offset(text, begin)}")
                if tag == "a" and attr == "href":
                    argument = value
                elif tag == "code" and attr == "class" and value.startswith("language-"):
                    argument = value[len("language-"):]
                elif tag == "span" and attr == "class" and value.startswith("tg-"):
                    span_class = value[3:]
                elif tag == "blockquote" and attr == "expandable":
                    expandable = True
            if tag == "span" and span_class != "spoiler":
                raise err(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(text, begin)}')
            stack.append((tag, argument, out.offset, expandable))
            i += 1  # '>'
        else:
            # end tag
            if not stack:
                raise err(f"Unexpected end tag at byte offset {_byte_offset(text, begin)}")
            i += 1
            j = i
            while j < n and text[j] not in _SPACES and text[j] != ">":
                j += 1
            end_name = text[i:j].lower()
            while j < n and text[j] in _SPACES:
                j += 1
            if j >= n or text[j] != ">":
                raise err(f"Unclosed end tag at byte offset {_byte_offset(text, begin)}")
            tag, argument, start, expandable = stack[-1]
            if end_name and end_name != tag:
                raise err(
                    f"Unmatched end tag at byte offset {_byte_offset(text, begin)}, "
                    f'expected "</{tag}>", found "</{end_name}>"'
                )
            stack.pop()
            i = j + 1
            etype = _HTML_TAGS[tag]
            if etype == "text_link":
                if argument:
                    out.entity("text_link", start, url=argument)
            elif etype == "blockquote":
                out.entity("expandable_blockquote" if expandable else "blockquote", start)
            elif etype == "pre":
                out.entity("pre", start, language=argument)
            else:
                out.entity(etype, start)
    if stack:
        raise err(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.text(), out.entities


_MDV2_RESERVED = "_*[]()~`>#+-=|{}.!"
_MDV2_NAMES = {
    "bold": "Bold", "italic": "Italic", "underline": "Underline", "strikethrough": "Strikethrough",
    "spoiler": "Spoiler", "code": "Code", "pre": "Pre", "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}


def _parse_markdown_v2(text: str) -> tuple[str, list[dict]]:
    """tdlib-like MarkdownV2 parser: reserved characters must be escaped, entities closed."""
    out = _Builder()
    stack: list[list[Any]] = []  # [type, utf16 start, begin index, argument]
    quote_start: int | None = None
    quote_expandable = False
    n = len(text)
    i = 0

    def ch(k: int) -> str:
        return text[k] if 0 <= k < n else ""

    def line_start(k: int) -> bool:
        return k == 0 or text[k - 1] == "\n"

    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
            out.add(text[i + 1])
            i += 2
            continue
        top = stack[-1][0] if stack else None
        in_code = top in ("code", "pre")
        if c == "\n" and quote_start is not None and not in_code and ch(i + 1) != ">":
            out.entity("expandable_blockquote" if quote_expandable else "blockquote", quote_start)
            quote_start = None
        if not in_code and line_start(i) and (c == ">" or text.startswith("**>", i)):
            if quote_start is None:
                quote_start = out.offset
                quote_expandable = c == "*"
            i += 3 if c == "*" else 1
            continue
        reserved = "`" if in_code else _MDV2_RESERVED
        if c not in reserved:
            out.add(c)
            i += 1
            continue
        is_end = {
            "bold": c == "*",
            "italic": c == "_" and ch(i + 1) != "_",
            "code": c == "`",
            "pre": c == "`" and ch(i + 1) == "`" and ch(i + 2) == "`",
            "text_link": c == "]",
            "custom_emoji": c == "]",
            "underline": c == "_" and ch(i + 1) == "_",
            "strikethrough": c == "~",
            "spoiler": c == "|" and ch(i + 1) == "|",
        }.get(top or "", False)
        if not is_end:
            begin = i
            argument = ""
            if c == "_":
                if ch(i + 1) == "_":
                    etype = "underline"
                    i += 1
                else:
                    etype = "italic"
            elif c == "*":
                etype = "bold"
            elif c == "~":
                etype = "strikethrough"
            elif c == "|" and ch(i + 1) == "|":
                etype = "spoiler"
                i += 1
            elif c == "[":
                etype = "text_link"
            elif c == "!" and ch(i + 1) == "[":
                etype = "custom_emoji"
                i += 1
            elif c == "`":
                if ch(i + 1) == "`" and ch(i + 2) == "`":
                    etype = "pre"
                    i += 3
                    lang_end = i
                    while lang_end < n and text[lang_end] not in _SPACES and text[lang_end] != "`":
                        lang_end += 1
                    if i != lang_end and lang_end < n and text[lang_end] != "`":
                        argument = text[i:lang_end]
                        i = lang_end
                    if ch(i) in ("\n", "\r"):
                        i += 2 if ch(i + 1) in ("\n", "\r") and ch(i + 1) != ch(i) else 1
                    stack.append([etype, out.offset, begin, argument])
                    continue
                etype = "code"
            else:
                raise _EntityParseError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
            stack.append([etype, out.offset, begin, argument])
            i += 1
            continue
        etype, start, begin, argument = stack.pop()
        if etype in ("text_link", "custom_emoji"):
            if ch(i + 1) == "(":
                i += 2
                url_begin = i
                url: list[str] = []
                while i < n and text[i] != ")":
                    if text[i] == "\\" and i + 1 < n and 0 < ord(text[i + 1]) <= 126:
                        url.append(text[i + 1])
                        i += 2
                        continue
                    url.append(text[i])
                    i += 1
                if i >= n:
                    raise _EntityParseError(f"Can't find end of a URL at byte offset {_byte_offset(text, url_begin)}")
                argument = "".join(url)
            else:
                argument = ""  # "[text]" without "(url)": Telegram uses the text as URL if valid; dropped here
            i += 1
            if etype == "text_link" and argument:
                out.entity("text_link", start, url=argument)
            elif etype == "custom_emoji":
                out.entity("custom_emoji", start, custom_emoji_id=argument.rpartition("id=")[2])
            continue
        if etype in ("underline", "spoiler"):
            i += 2
        elif etype == "pre":
            i += 3
        else:
            i += 1
        if etype == "pre":
            out.entity("pre", start, language=argument)
        else:
            out.entity(etype, start)
    if quote_start is not None:
        out.entity("expandable_blockquote" if quote_expandable else "blockquote", quote_start)
    if stack:
        etype, _, begin, _ = stack[-1]
        raise _EntityParseError(
            f"Can't find end of {_MDV2_NAMES[etype]} entity at byte offset {_byte_offset(text, begin)}"
        )
    return out.text(), out.entities


def _strip(plain: str, entities: list[dict]) -> tuple[str, list[dict]]:
    stripped = plain.strip()
    if stripped == plain:
        return plain, entities
    lead = _u16(plain[: len(plain) - len(plain.lstrip())])
    total = _u16(stripped)
    fixed = []
    for ent in entities:
        start = max(ent["offset"] - lead, 0)
        end = min(ent["offset"] + ent["length"] - lead, total)
        if end > start:
            fixed.append({**ent, "offset": start, "length": end - start})
    return stripped, fixed


def parse_formatted_text(
    text: str, parse_mode: str | None = None, entities: list | None = None, strict_ampersand: bool = True
) -> tuple[str, list[dict]]:
    """Return (plain text, entities) as Telegram would store them; raises ApiError(400)."""
    if entities:
        if not isinstance(entities, list):
            raise _bad("can't parse entities JSON object")
        return _strip(text, sorted(entities, key=lambda e: (e.get("offset", 0), -e.get("length", 0))))
    mode = (parse_mode or "").strip().lower()
    try:
        if not mode:
            plain, ents = text, []
        elif mode == "html":
            plain, ents = _parse_html(text, strict_ampersand)
        elif mode == "markdownv2":
            plain, ents = _parse_markdown_v2(text)
        else:
            raise _bad("unsupported parse_mode")
    except _EntityParseError as exc:
        raise _bad(f"can't parse entities: {exc}") from None
    ents.sort(key=lambda e: (e["offset"], -e["length"]))
    return _strip(plain, ents)


# --------------------------------------------------------------------------- images

def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG (the bot's charts), None for anything else."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


# --------------------------------------------------------------------------- server

def _norm_chat_id(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        s = value.strip()
        if re.fullmatch(r"-?\d+", s):
            return int(s)
        return s
    return value


def _as_int(value: Any, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    try:
        return int(float(value))
    except (TypeError, ValueError):
        raise _bad(f"wrong integer value {value!r}") from None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


class TelegramSimServer:
    """Bot-API-shaped server. See the module docstring."""

    def __init__(self, token: str = "123456:TEST-TOKEN", bot_username: str = "pressure_test_bot", *,
                 bot_rate: float | None = None, chat_rate: float | None = None):
        self.token = token
        #: Telegram's flood limits, enforced when set (None: not emulated): at most `bot_rate` messages a second for
        #: the bot (a token bucket holding one second's worth) and `chat_rate` a second per chat (a bucket of one).
        #: Over either, a send is refused with 429 "Too Many Requests: retry after N" and parameters.retry_after.
        self.bot_rate, self.chat_rate = bot_rate, chat_rate
        self._bot_bucket: tuple[float, float] | None = None        # (tokens, at monotonic time)
        self._chat_last: dict[Any, float] = {}
        self.flood_refusals = 0
        self.bot_username = bot_username
        head = token.split(":", 1)[0]
        self.bot_id = int(head) if head.isdigit() else 123456
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": bot_username.replace("_", " ").title(),
            "username": bot_username,
        }
        #: strict HTML '&' checking (see module docstring); False = Telegram's lenient behaviour
        self.strict_ampersand = True

        # observation
        self.calls: list[tuple[str, dict]] = []
        self.errors: list[tuple[str, dict, dict]] = []  # (method, params, error body) for every non-ok reply
        self.edits: list[dict] = []  # successful edit* calls (records like sent())
        self.callback_answers: list[dict] = []  # params of successful answerCallbackQuery
        self.downloads: list[str] = []  # file_paths fetched via /file/bot<token>/...
        self.listeners: list[Callable[[dict], None]] = []  # called with each sent() record

        self._lock = threading.RLock()
        self._sent: list[dict] = []
        self._updates: list[dict] = []
        self._update_ids = itertools.count(100_000_001)
        self._callback_ids = itertools.count(4_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._messages: dict[tuple[Any, int], dict] = {}
        self._next_message_id: dict[Any, int] = {}
        self._chats: dict[Any, dict] = {}
        self._users: dict[int, dict] = {}
        self._files: dict[str, dict] = {}
        self._paths: dict[str, str] = {}
        self._callbacks: dict[str, dict] = {}
        self._faults: list[dict] = []
        self._admins: dict[Any, list[int]] = {}
        self._commands: dict[tuple[str, str], list[dict]] = {}
        self._allowed_updates: list[str] | None = None
        self._poll_generation = 0

        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False
        self.root: str | None = None

        self._methods: dict[str, tuple[str, Callable[[dict, dict], Any]]] = {}
        for attr in dir(self):
            if attr.startswith("_api_"):
                name = attr[len("_api_"):]
                self._methods[name.lower()] = (name, getattr(self, attr))

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start serving; returns the API root, e.g. ``http://127.0.0.1:PORT``."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._closing = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{file_path:.+}", self._handle_file)
        app.router.add_post("/sim/{action}", self._handle_control)
        app.router.add_get("/sim/{action}", self._handle_control)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.root = f"http://{shown}:{bound_port}"
        return self.root

    async def stop(self) -> None:
        """Wake pending long polls (they return []) and shut the server down."""
        self._closing = True
        self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> TelegramSimServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _notify(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._notify_now()
        else:
            loop.call_soon_threadsafe(self._notify_now)

    def _notify_now(self) -> None:
        old, self._wakeup = self._wakeup, asyncio.Event()
        if old is not None:
            old.set()

    # ------------------------------------------------------------------ driving the bot

    def _user(self, user_id: int, username: str | None = None) -> dict:
        user = self._users.get(user_id)
        if user is None or (username and user.get("username") != username):
            name = username or f"user{user_id}"
            user = {
                "id": user_id,
                "is_bot": False,
                "first_name": name[:1].upper() + name[1:],
                "username": name,
                "language_code": "en",
            }
            self._users[user_id] = user
        return user

    def _chat(self, chat_id: Any, chat_type: str | None = None, username: str | None = None) -> dict:
        chat = self._chats.get(chat_id)
        if chat is not None and (chat_type is None or chat["type"] == chat_type):
            return chat
        if chat_type is None:
            if isinstance(chat_id, int) and chat_id > 0:
                chat_type = "private"
            elif isinstance(chat_id, int) and chat_id <= -1_000_000_000_000:
                chat_type = "supergroup"
            elif isinstance(chat_id, int):
                chat_type = "group"
            else:
                chat_type = "channel"
        chat = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            name = username or f"user{chat_id}"
            chat.update(first_name=name[:1].upper() + name[1:], username=name)
        else:
            chat["title"] = f"{chat_type.title()} {chat_id}"
        self._chats[chat_id] = chat
        return chat

    def _new_message(self, chat_id: Any, sender: dict | None, **fields: Any) -> dict:
        mid = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = mid + 1
        msg: dict[str, Any] = {"message_id": mid}
        if sender is not None:
            msg["from"] = sender
        msg["chat"] = self._chat(chat_id)
        msg["date"] = int(time.time())
        msg.update({k: v for k, v in fields.items() if v is not None and v != []})
        self._messages[(chat_id, mid)] = msg
        return msg

    def _enqueue(self, update: dict) -> dict:
        update["update_id"] = next(self._update_ids)
        self._updates.append(update)
        self._notify()
        return update

    def push_message(
        self,
        chat_id: int,
        text: str,
        user_id: int | None = None,
        chat_type: str = "private",
        reply_to: dict | None = None,
        document: dict | None = None,
        username: str = "alice",
    ) -> dict:
        """Queue a user message Update (``channel`` chats produce a ``channel_post``); returns it."""
        with self._lock:
            if user_id is None:
                user_id = chat_id if chat_type == "private" and chat_id > 0 else 424242
            self._chat(chat_id, chat_type, username)
            sender = None if chat_type == "channel" else copy.deepcopy(self._user(user_id, username))
            fields: dict[str, Any] = {}
            entities = [
                {"type": "bot_command", "offset": _u16(text[: m.start()]), "length": _u16(m.group())}
                for m in re.finditer(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![^\s.,;:!?)])", text or "")
            ]
            if document is not None:
                fields["document"] = dict(document)
                if text:
                    fields["caption"] = text
                    fields["caption_entities"] = entities
            else:
                fields["text"] = text
                fields["entities"] = entities
            if chat_type == "channel":
                fields["sender_chat"] = copy.deepcopy(self._chats[chat_id])
            if reply_to is not None:
                original = self._messages.get((chat_id, reply_to.get("message_id")))
                replied = copy.deepcopy(original if original is not None else reply_to)
                replied.pop("reply_to_message", None)
                replied.setdefault("date", int(time.time()))
                replied.setdefault("chat", copy.deepcopy(self._chats[chat_id]))
                fields["reply_to_message"] = replied
            msg = self._new_message(chat_id, sender, **fields)
            key = "channel_post" if chat_type == "channel" else "message"
            return self._enqueue({key: copy.deepcopy(msg)})

    def push_callback(self, chat_id: int, message_id: int, data: str, user_id: int | None = None) -> str:
        """Queue a callback_query Update for a button on (chat_id, message_id); returns the query id."""
        with self._lock:
            chat = self._chat(chat_id)
            if user_id is None:
                user_id = chat_id if chat["type"] == "private" else 424242
            msg = self._messages.get((chat_id, message_id))
            if msg is None:
                msg = {"message_id": message_id, "from": self.bot_user, "chat": chat, "date": int(time.time()), "text": "?"}
            qid = str(next(self._callback_ids))
            self._callbacks[qid] = {"answered": False, "chat_id": chat_id, "message_id": message_id, "data": data}
            self._enqueue(
                {
                    "callback_query": {
                        "id": qid,
                        "from": copy.deepcopy(self._user(user_id)),
                        "message": copy.deepcopy(msg),
                        "chat_instance": str(abs(hash(("chat", chat_id))) % 10**18),
                        "data": data,
                    }
                }
            )
            return qid

    def add_file(self, content: bytes, file_name: str, mime_type: str = "application/x-yaml") -> dict:
        """Store a file; returns a Document dict to pass as ``push_message(document=...)``."""
        with self._lock:
            rec = self._store_file(content, "documents", file_name, mime_type)
            return {
                "file_id": rec["file_id"],
                "file_unique_id": rec["file_unique_id"],
                "file_name": file_name,
                "mime_type": mime_type,
                "file_size": len(content),
            }

    def _store_file(self, content: bytes | None, folder: str, file_name: str | None, mime_type: str | None) -> dict:
        n = next(self._file_ids)
        ext = ""
        if file_name and "." in file_name:
            ext = "." + file_name.rsplit(".", 1)[1]
        elif folder == "photos":
            ext = ".jpg"
        rec = {
            "file_id": f"SIM{folder[:3].upper()}{n:06d}-{abs(hash((self.token, n))) % 10**8:08d}",
            "file_unique_id": f"AgADsim{n}",
            "file_path": f"{folder}/sim_file_{n}{ext}",
            "file_name": file_name,
            "mime_type": mime_type,
            "content": content,
            "file_size": len(content) if content is not None else 0,
        }
        self._files[rec["file_id"]] = rec
        self._paths[rec["file_path"]] = rec["file_id"]
        return rec

    # ------------------------------------------------------------------ observing

    def sent(self, chat_id: int | None = None) -> list[dict]:
        """Messages the bot sent successfully (sendMessage/sendPhoto/sendDocument), oldest first.

        Each record: method, chat_id, message_id, text (as sent, with markup), caption,
        parse_mode, plain (text/caption after entity parsing), entities, reply_markup (dict),
        photo / document (bytes, or None when sent by file_id/URL), file_name, mime_type,
        message (the Message dict returned, live: reflects later edits), params.
        """
        with self._lock:
            if chat_id is None:
                return list(self._sent)
            want = _norm_chat_id(chat_id)
            return [r for r in self._sent if r["chat_id"] == want]

    def message(self, chat_id: int, message_id: int) -> dict | None:
        """Current state of a stored message (user's or bot's), after any edits."""
        with self._lock:
            return self._messages.get((_norm_chat_id(chat_id), message_id))

    def calls_of(self, method: str | None) -> list[dict]:
        """Params of every call of ``method`` (all calls, each with ``_method``, when None)."""
        with self._lock:
            if method is None:
                return [{"_method": m, **p} for m, p in self.calls]
            low = method.lower()
            return [p for m, p in self.calls if m.lower() == low]

    def clear_calls(self) -> None:
        with self._lock:
            self.calls.clear()
            self.errors.clear()

    @property
    def pending_updates(self) -> list[dict]:
        """Updates not yet confirmed by a getUpdates offset."""
        with self._lock:
            return list(self._updates)

    async def wait_for(
        self,
        predicate: Callable[[list[dict]], bool] | None = None,
        method: str | None = "sendMessage",
        count: int = 1,
        timeout: float = 5.0,
    ) -> list:
        """Wait until at least ``count`` calls of ``method`` were made and ``predicate(params_list)``
        holds. Counts every call, including ones answered with an (injected) error; use
        ``sent()`` for successful sends. Returns the list of params. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            items = self.calls_of(method)
            if len(items) >= count and (predicate is None or predicate(items)):
                return items
            if time.monotonic() >= deadline:
                seen = [(m, {k: v for k, v in p.items() if k in ("chat_id", "text", "caption", "data")}) for m, p in self.calls if m != "getUpdates"]
                raise TimeoutError(f"wait_for({method!r}, count={count}) timed out after {timeout}s; calls: {seen[-15:]}")
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ faults / fixtures

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str,
        retry_after: int | None = None,
        chat_id: int | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``"*"`` = any; optionally only for
        ``chat_id``) with this error. ``times=-1`` = until ``clear_faults()``."""
        with self._lock:
            self._faults.append(
                {
                    "method": method.lower(),
                    "error_code": error_code,
                    "description": description,
                    "retry_after": retry_after,
                    "chat_id": _norm_chat_id(chat_id) if chat_id is not None else None,
                    "times": times,
                }
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_admins(self, chat_id: int, user_ids: list[int]) -> None:
        """Administrators of a group: the first is reported as ``creator``, the rest ``administrator``."""
        with self._lock:
            self._admins[_norm_chat_id(chat_id)] = [int(u) for u in user_ids]

    _SENDS = {"sendmessage", "sendphoto", "senddocument"}

    def _flood(self, method: str, params: dict) -> ApiError | None:
        """The flood limits (when set): a send over the bot's or the chat's rate is refused with a 429."""
        if method.lower() not in self._SENDS or (self.bot_rate is None and self.chat_rate is None):
            return None
        now = time.monotonic()
        wait = 0.0
        if self.bot_rate is not None:
            tokens, at = self._bot_bucket or (self.bot_rate, now)
            tokens = min(self.bot_rate, tokens + (now - at) * self.bot_rate)
            if tokens < 1:
                wait = (1 - tokens) / self.bot_rate
            self._bot_bucket = (tokens, now)
        chat = _norm_chat_id(params.get("chat_id"))
        if self.chat_rate is not None and chat in self._chat_last:
            wait = max(wait, self._chat_last[chat] + 1 / self.chat_rate - now)
        if wait > 0:
            self.flood_refusals += 1
            secs = max(1, math.ceil(wait))
            return ApiError(429, f"Too Many Requests: retry after {secs}", {"retry_after": secs})
        if self.bot_rate is not None:
            tokens, at = self._bot_bucket
            self._bot_bucket = (tokens - 1, at)
        self._chat_last[chat] = now
        return None

    def _take_fault(self, method: str, params: dict) -> ApiError | None:
        chat = _norm_chat_id(params.get("chat_id")) if "chat_id" in params else None
        for fault in self._faults:
            if fault["method"] not in ("*", method.lower()):
                continue
            if fault["chat_id"] is not None and fault["chat_id"] != chat:
                continue
            if fault["times"] > 0:
                fault["times"] -= 1
                if fault["times"] == 0:
                    self._faults.remove(fault)
            extra = {"retry_after": fault["retry_after"]} if fault["retry_after"] is not None else None
            return ApiError(fault["error_code"], fault["description"], extra)
        return None

    # ------------------------------------------------------------------ HTTP layer

    async def _read_params(self, request: web.Request) -> tuple[dict, dict]:
        params: dict[str, Any] = {}
        files: dict[str, dict] = {}
        form_values: dict[str, Any] = dict(request.query)
        if request.body_exists:
            ctype = request.content_type
            if ctype == "application/json":
                body = await request.json()
                if not isinstance(body, dict):
                    raise _bad("request body must be a JSON object")
                params.update(body)
            elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        content = value.file.read()
                        files[key] = {"content": content, "filename": value.filename, "mime_type": value.content_type}
                        form_values[key] = content
                    else:
                        form_values[key] = value
            else:
                raw = await request.read()
                if raw.strip():
                    try:
                        body = json.loads(raw)
                        if isinstance(body, dict):
                            params.update(body)
                    except ValueError:
                        raise _bad("unsupported request body") from None
        for key, value in form_values.items():
            if isinstance(value, str) and key not in _STRING_PARAMS:
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            params[key] = value
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                ref = files.get(value[len("attach://"):])
                if ref is not None:
                    params[key] = ref["content"]
        return params, files

    def _reply(self, method: str, params: dict, result: Any = None, error: ApiError | None = None) -> web.Response:
        if error is not None:
            body = error.body()
            with self._lock:
                self.errors.append((method, params, body))
            return web.json_response(body, status=error.error_code)
        return web.json_response({"ok": True, "result": result})

    async def _handle_api(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        raw_method = request.match_info["method"]
        entry = self._methods.get(raw_method.lower())
        method = entry[0] if entry else raw_method
        try:
            params, files = await self._read_params(request)
        except ApiError as exc:
            return self._reply(method, {}, error=exc)
        except Exception as exc:  # noqa: BLE001 - malformed bodies are a client error
            return self._reply(method, {}, error=_bad(f"can't parse request: {exc}"))
        with self._lock:
            self.calls.append((method, params))
            if token != self.token:
                return self._reply(method, params, error=ApiError(401, "Unauthorized"))
            if entry is None:
                return self._reply(method, params, error=ApiError(404, "Not Found"))
            fault = self._take_fault(method, params) or self._flood(method, params)
            if fault is not None:
                return self._reply(method, params, error=fault)
        func = entry[1]
        try:
            if asyncio.iscoroutinefunction(func):
                result = await func(params, files)
            else:
                with self._lock:
                    result = func(params, files)
        except ApiError as exc:
            return self._reply(method, params, error=exc)
        except Exception as exc:  # noqa: BLE001 - report as Telegram would, keep serving
            log.exception("simulated %s failed", method)
            return self._reply(method, params, error=_bad(f"simulator error: {exc!r}"))
        return self._reply(method, params, result)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        path = request.match_info["file_path"]
        with self._lock:
            rec = self._files.get(self._paths.get(path, ""))
            self.downloads.append(path)
        if rec is None or rec["content"] is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=rec["content"], content_type=rec["mime_type"] or "application/octet-stream")

    # ------------------------------------------------------------------ helpers for methods

    def _require_chat(self, p: dict) -> Any:
        chat_id = _norm_chat_id(p.get("chat_id"))
        if chat_id is None or chat_id == "":
            raise _bad("chat_id is empty")
        if isinstance(chat_id, str):  # @channelusername: the bot only addresses numeric chat ids
            raise _bad("chat not found")
        return chat_id

    def _format(self, text: str, p: dict, parse_key: str = "parse_mode", entities_key: str = "entities") -> tuple[str, list[dict]]:
        return parse_formatted_text(str(text), p.get(parse_key), p.get(entities_key), self.strict_ampersand)

    def _check_markup(self, markup: Any) -> dict | None:
        """Validate reply_markup; returns the inline keyboard to echo in the Message (or None)."""
        if markup is None or markup == "":
            return None
        if isinstance(markup, str):
            try:
                markup = json.loads(markup)
            except ValueError:
                raise _bad("can't parse reply keyboard markup JSON object") from None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad("field \"inline_keyboard\" of the InlineKeyboardMarkup should be an Array of Arrays")
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not button.get("text"):
                        raise _bad("BUTTON_TEXT_INVALID")
                    if not any(k in button for k in _BUTTON_ACTIONS):
                        raise _bad("text buttons are unallowed in the inline keyboard")
                    if "callback_data" in button:
                        size = len(str(button["callback_data"]).encode("utf-8"))
                        if not 1 <= size <= 64:
                            raise _bad("BUTTON_DATA_INVALID")
                    if "url" in button and not str(button["url"]).strip():
                        raise _bad("BUTTON_URL_INVALID")
            return markup
        if not any(k in markup for k in ("keyboard", "remove_keyboard", "force_reply")):
            raise _bad("can't parse reply keyboard markup JSON object")
        return None

    def _reply_target(self, chat_id: Any, p: dict) -> dict | None:
        rp = p.get("reply_parameters")
        if isinstance(rp, str):
            rp = json.loads(rp)
        if not rp and p.get("reply_to_message_id") not in (None, "", 0):
            rp = {"message_id": p["reply_to_message_id"], "allow_sending_without_reply": p.get("allow_sending_without_reply")}
        if not rp:
            return None
        target_chat = _norm_chat_id(rp.get("chat_id", chat_id))
        original = self._messages.get((target_chat, _as_int(rp.get("message_id"))))
        if original is None:
            if _as_bool(rp.get("allow_sending_without_reply") or p.get("allow_sending_without_reply")):
                return None
            raise _bad("message to be replied not found")
        replied = copy.deepcopy(original)
        replied.pop("reply_to_message", None)
        return replied

    def _record_sent(self, method: str, chat_id: Any, msg: dict, p: dict, **extra: Any) -> None:
        rec = {
            "method": method,
            "chat_id": chat_id,
            "message_id": msg["message_id"],
            "text": p.get("text"),
            "caption": p.get("caption"),
            "parse_mode": p.get("parse_mode"),
            "plain": msg.get("text", msg.get("caption")),
            "entities": msg.get("entities", msg.get("caption_entities", [])),
            "reply_markup": p.get("reply_markup"),
            "photo": None,
            "document": None,
            "file_name": None,
            "mime_type": None,
            "message": msg,
            "params": p,
        }
        rec.update(extra)
        self._sent.append(rec)
        for listener in list(self.listeners):
            try:
                listener(rec)
            except Exception:  # noqa: BLE001 - observers must not break the server
                log.exception("sent-listener failed")

    def _upload(self, p: dict, files: dict, field: str, folder: str) -> tuple[dict, bytes | None]:
        """Resolve an uploaded file / file_id / URL into a stored file record."""
        value = p.get(field)
        if value is None or value == "":
            raise _bad(f"there is no {field} in the request")
        if isinstance(value, (bytes, bytearray)):
            content = bytes(value)
            if not content:
                raise _bad("file must be non-empty")
            meta = files.get(field, {})
            name = p.get("filename") or meta.get("filename")
            mime = meta.get("mime_type") or (mimetypes.guess_type(name)[0] if name else None) or "application/octet-stream"
            return self._store_file(content, folder, name, mime), content
        value = str(value)
        rec = self._files.get(value)
        if rec is not None:
            return rec, rec["content"]
        if value.startswith(("http://", "https://")):
            name = value.rstrip("/").rsplit("/", 1)[-1] or None
            return self._store_file(None, folder, name, mimetypes.guess_type(value)[0]), None
        raise _bad("wrong file identifier/HTTP URL specified")

    def _caption(self, p: dict) -> tuple[str | None, list[dict]]:
        caption = p.get("caption")
        if caption is None or caption == "":
            return None, []
        plain, ents = self._format(caption, p, "parse_mode", "caption_entities")
        if len(plain) > MAX_CAPTION_LENGTH:
            raise _bad("message caption is too long")
        return plain or None, ents

    def _editable(self, p: dict) -> dict | None:
        """Stored bot message addressed by chat_id/message_id (None for inline messages)."""
        if p.get("inline_message_id"):
            return None
        chat_id = self._require_chat(p)
        mid = _as_int(p.get("message_id"))
        if mid is None:
            raise _bad("message identifier is not specified")
        msg = self._messages.get((chat_id, mid))
        if msg is None:
            raise _bad("message to edit not found")
        if msg.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return msg

    def _member(self, chat_id: Any, user_id: int) -> dict:
        user = self.bot_user if user_id == self.bot_id else self._users.get(user_id) or {
            "id": user_id, "is_bot": False, "first_name": f"User{user_id}",
        }
        admins = self._admins.get(chat_id, [])
        if admins and admins[0] == user_id:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in admins:
            return {
                "status": "administrator", "user": user, "can_be_edited": False, "is_anonymous": False,
                "can_manage_chat": True, "can_delete_messages": True, "can_manage_video_chats": True,
                "can_restrict_members": True, "can_promote_members": False, "can_change_info": True,
                "can_invite_users": True, "can_post_stories": False, "can_edit_stories": False,
                "can_delete_stories": False, "can_pin_messages": True,
            }
        return {"status": "member", "user": user}

    # ------------------------------------------------------------------ Bot API methods
    # Each _api_<Name>(params, files) returns the "result" or raises ApiError.

    def _api_getMe(self, p: dict, files: dict) -> dict:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _api_logOut(self, p: dict, files: dict) -> bool:
        return True

    def _api_close(self, p: dict, files: dict) -> bool:
        return True

    def _api_deleteWebhook(self, p: dict, files: dict) -> bool:
        if _as_bool(p.get("drop_pending_updates", False)):
            self._updates.clear()
        return True

    async def _api_getUpdates(self, p: dict, files: dict) -> list[dict]:
        offset = _as_int(p.get("offset"), 0)
        limit = min(max(_as_int(p.get("limit"), 100) or 100, 1), 100)
        timeout = max(float(p.get("timeout") or 0), 0.0)
        allowed = p.get("allowed_updates")
        with self._lock:
            if allowed is not None:
                self._allowed_updates = list(allowed) or None
            self._poll_generation += 1
            generation = self._poll_generation
            if offset > 0:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]
            elif offset < 0:
                self._updates = self._updates[offset:]
        self._notify()  # terminates an older pending long poll (409)
        deadline = time.monotonic() + timeout
        while True:
            wakeup = self._wakeup
            with self._lock:
                if generation != self._poll_generation:
                    raise ApiError(409, CONFLICT)
                batch = self._select_updates(limit)
            remaining = deadline - time.monotonic()
            if batch or remaining <= 0 or self._closing or wakeup is None:
                return batch
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def _select_updates(self, limit: int) -> list[dict]:
        allowed = self._allowed_updates
        out = []
        for update in self._updates:
            if allowed is not None and not any(k in allowed for k in update if k != "update_id"):
                continue
            out.append(update)
            if len(out) >= limit:
                break
        return out

    def _api_setMyCommands(self, p: dict, files: dict) -> bool:
        commands = p.get("commands")
        if isinstance(commands, str):
            commands = json.loads(commands)
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        clean = []
        for cmd in commands:
            name = str(cmd.get("command", "")) if isinstance(cmd, dict) else ""
            desc = str(cmd.get("description", "")) if isinstance(cmd, dict) else ""
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(desc) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name, "description": desc})
        self._commands[self._commands_key(p)] = clean
        return True

    def _commands_key(self, p: dict) -> tuple[str, str]:
        scope = p.get("scope") or {"type": "default"}
        if isinstance(scope, str):
            scope = json.loads(scope)
        return json.dumps(scope, sort_keys=True), str(p.get("language_code") or "")

    def _api_getMyCommands(self, p: dict, files: dict) -> list[dict]:
        return copy.deepcopy(self._commands.get(self._commands_key(p), []))

    def _api_deleteMyCommands(self, p: dict, files: dict) -> bool:
        self._commands.pop(self._commands_key(p), None)
        return True

    @property
    def commands(self) -> list[dict]:
        """Commands currently set for the default scope and no language."""
        with self._lock:
            return copy.deepcopy(self._commands.get(self._commands_key({}), []))

    def _checked_text(self, p: dict) -> tuple[str, str, list]:
        """A message text as Telegram validates it: non-empty, parsable, at most 4096 characters."""
        text = p.get("text")
        if text is None or str(text) == "":
            raise _bad("message text is empty")
        plain, ents = self._format(text, p)
        if not plain:
            raise _bad("message text is empty")
        if len(plain) > MAX_TEXT_LENGTH:
            raise _bad("message is too long")
        return text, plain, ents

    def _api_sendMessage(self, p: dict, files: dict) -> dict:
        chat_id = self._require_chat(p)
        text, plain, ents = self._checked_text(p)
        markup = self._check_markup(p.get("reply_markup"))
        reply = self._reply_target(chat_id, p)
        msg = self._new_message(chat_id, self.bot_user, reply_to_message=reply, text=plain, entities=ents, reply_markup=markup)
        self._record_sent("sendMessage", chat_id, msg, p, reply_markup=markup if markup is not None else p.get("reply_markup"))
        return msg

    def _api_sendPhoto(self, p: dict, files: dict) -> dict:
        chat_id = self._require_chat(p)
        caption, cents = self._caption(p)
        markup = self._check_markup(p.get("reply_markup"))
        reply = self._reply_target(chat_id, p)
        rec, content = self._upload(p, files, "photo", "photos")
        if content is not None:
            size = _image_size(content)
            if size is None:
                raise _bad("IMAGE_PROCESS_FAILED")
        else:
            size = (1280, 720)
        w, h = size
        scale = min(1.0, 90 / max(w, h, 1))
        thumb = self._store_file(content, "photos", None, "image/jpeg")
        photo = [
            {"file_id": thumb["file_id"], "file_unique_id": thumb["file_unique_id"], "file_size": thumb["file_size"],
             "width": max(int(w * scale), 1), "height": max(int(h * scale), 1)},
            {"file_id": rec["file_id"], "file_unique_id": rec["file_unique_id"], "file_size": rec["file_size"],
             "width": w, "height": h},
        ]
        msg = self._new_message(chat_id, self.bot_user, reply_to_message=reply, photo=photo, caption=caption,
                                caption_entities=cents, reply_markup=markup)
        self._record_sent("sendPhoto", chat_id, msg, p, photo=content, reply_markup=markup if markup is not None else p.get("reply_markup"),
                          file_name=rec["file_name"], mime_type=rec["mime_type"])
        return msg

    def _api_sendDocument(self, p: dict, files: dict) -> dict:
        chat_id = self._require_chat(p)
        caption, cents = self._caption(p)
        markup = self._check_markup(p.get("reply_markup"))
        reply = self._reply_target(chat_id, p)
        rec, content = self._upload(p, files, "document", "documents")
        document = {"file_id": rec["file_id"], "file_unique_id": rec["file_unique_id"], "file_size": rec["file_size"]}
        if rec["file_name"]:
            document["file_name"] = rec["file_name"]
        if rec["mime_type"]:
            document["mime_type"] = rec["mime_type"]
        msg = self._new_message(chat_id, self.bot_user, reply_to_message=reply, document=document, caption=caption,
                                caption_entities=cents, reply_markup=markup)
        self._record_sent("sendDocument", chat_id, msg, p, document=content, reply_markup=markup if markup is not None else p.get("reply_markup"),
                          file_name=rec["file_name"], mime_type=rec["mime_type"])
        return msg

    def _api_editMessageText(self, p: dict, files: dict) -> dict | bool:
        text, plain, ents = self._checked_text(p)
        markup = self._check_markup(p.get("reply_markup"))
        msg = self._editable(p)
        if msg is None:
            return True
        if "text" not in msg:
            raise _bad("there is no text in the message to edit")
        if plain == msg["text"] and ents == msg.get("entities", []) and markup == msg.get("reply_markup"):
            raise ApiError(400, NOT_MODIFIED)
        msg["text"] = plain
        self._set_optional(msg, "entities", ents)
        self._set_optional(msg, "reply_markup", markup)
        msg["edit_date"] = int(time.time())
        self._record_edit("editMessageText", msg, p)
        return msg

    def _api_editMessageReplyMarkup(self, p: dict, files: dict) -> dict | bool:
        markup = self._check_markup(p.get("reply_markup"))
        msg = self._editable(p)
        if msg is None:
            return True
        if markup == msg.get("reply_markup"):
            raise ApiError(400, NOT_MODIFIED)
        self._set_optional(msg, "reply_markup", markup)
        msg["edit_date"] = int(time.time())
        self._record_edit("editMessageReplyMarkup", msg, p)
        return msg

    @staticmethod
    def _set_optional(msg: dict, key: str, value: Any) -> None:
        if value is None or value == []:
            msg.pop(key, None)
        else:
            msg[key] = value

    def _record_edit(self, method: str, msg: dict, p: dict) -> None:
        self.edits.append(
            {
                "method": method,
                "chat_id": msg["chat"]["id"],
                "message_id": msg["message_id"],
                "text": p.get("text"),
                "caption": p.get("caption"),
                "parse_mode": p.get("parse_mode"),
                "plain": msg.get("text", msg.get("caption")),
                "reply_markup": msg.get("reply_markup"),
                "message": copy.deepcopy(msg),
                "params": p,
            }
        )

    def _api_answerCallbackQuery(self, p: dict, files: dict) -> bool:
        qid = str(p.get("callback_query_id") or "")
        query = self._callbacks.get(qid)
        if query is None or query["answered"]:
            raise _bad(QUERY_TOO_OLD)
        if len(str(p.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        query["answered"] = True
        self.callback_answers.append(p)
        return True

    def _api_sendChatAction(self, p: dict, files: dict) -> bool:
        self._require_chat(p)
        if p.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _api_getFile(self, p: dict, files: dict) -> dict:
        rec = self._files.get(str(p.get("file_id") or ""))
        if rec is None:
            raise _bad("invalid file_id")
        if rec["file_size"] > MAX_DOWNLOAD_SIZE:
            raise _bad("file is too big")
        return {
            "file_id": rec["file_id"],
            "file_unique_id": rec["file_unique_id"],
            "file_size": rec["file_size"],
            "file_path": rec["file_path"],
        }

    def _api_getChat(self, p: dict, files: dict) -> dict:
        chat_id = self._require_chat(p)
        return {
            **self._chat(chat_id),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": True, "limited_gifts": True, "unique_gifts": True,
                "premium_subscription": True, "gifts_from_channels": True,
            },
        }

    def _api_getChatMember(self, p: dict, files: dict) -> dict:
        chat_id = self._require_chat(p)
        user_id = _as_int(p.get("user_id"))
        if user_id is None:
            raise _bad("user_id is empty")
        return self._member(chat_id, user_id)

    def _api_getChatAdministrators(self, p: dict, files: dict) -> list[dict]:
        chat_id = self._require_chat(p)
        if self._chat(chat_id)["type"] == "private":
            raise _bad("there are no administrators in the private chat")
        return [self._member(chat_id, uid) for uid in self._admins.get(chat_id, [])]

    # ------------------------------------------------------------------ control API (/sim/...)

    async def _handle_control(self, request: web.Request) -> web.Response:
        action = request.match_info["action"]
        body: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.body_exists:
            raw = await request.read()
            if raw.strip():
                try:
                    body.update(json.loads(raw))
                except ValueError:
                    return web.json_response({"ok": False, "description": "body must be JSON"}, status=400)
        try:
            result = self._control(action, body)
        except (KeyError, TypeError, ValueError) as exc:
            return web.json_response({"ok": False, "description": f"bad arguments: {exc!r}"}, status=400)
        if result is _MISSING:
            return web.json_response({"ok": False, "description": f"unknown action {action!r}"}, status=404)
        return web.json_response({"ok": True, "result": _jsonable(result)})

    def _control(self, action: str, b: dict) -> Any:
        if action == "push_message":
            return self.push_message(
                int(b["chat_id"]), str(b.get("text", "")), user_id=b.get("user_id"),
                chat_type=b.get("chat_type", "private"), reply_to=b.get("reply_to"),
                document=b.get("document"), username=b.get("username", "alice"),
            )
        if action == "push_callback":
            return {"id": self.push_callback(int(b["chat_id"]), int(b["message_id"]), str(b["data"]), b.get("user_id"))}
        if action == "add_file":
            content = base64.b64decode(b["base64"]) if "base64" in b else str(b.get("text", "")).encode()
            return self.add_file(content, b["file_name"], b.get("mime_type", "application/x-yaml"))
        if action == "fail_next":
            self.fail_next(b["method"], int(b["error_code"]), b["description"], b.get("retry_after"), b.get("chat_id"), int(b.get("times", 1)))
            return True
        if action == "set_admins":
            self.set_admins(int(b["chat_id"]), list(b["user_ids"]))
            return True
        if action == "sent":
            chat = b.get("chat_id")
            return [{k: v for k, v in r.items() if k != "params"} for r in self.sent(int(chat) if chat not in (None, "") else None)]
        if action == "calls":
            return self.calls_of(b.get("method") or None)
        if action == "stats":
            with self._lock:
                return {"flood_refusals": self.flood_refusals, "sent": len(self._sent),
                        "errors": len(self.errors)}
        if action == "clear":
            self.clear_calls()
            return True
        return _MISSING


_MISSING = object()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": len(value), "base64": base64.b64encode(value).decode() if len(value) <= 65536 else None}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------- standalone runner

def _print_sent(rec: dict) -> None:
    what = rec["plain"] or ""
    if rec["photo"] is not None:
        what = f"[photo {len(rec['photo'])} bytes] {what}"
    elif rec["method"] == "sendDocument":
        what = f"[document {rec['file_name']}] {what}"
    print(f"-> chat {rec['chat_id']} #{rec['message_id']}: {what}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Telegram Bot API simulator (loopback)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082, help="0 = pick a free port")
    parser.add_argument("--token", default="123456:TEST-TOKEN")
    parser.add_argument("--username", default="pressure_test_bot")
    parser.add_argument("--quiet", action="store_true", help="do not log sent messages to stderr")
    parser.add_argument("--bot-rate", type=float, default=None, help="enforce at most this many sends a second for "
                                                                     "the bot (429 beyond; Telegram: about 30)")
    parser.add_argument("--chat-rate", type=float, default=None, help="enforce at most this many sends a second per "
                                                                      "chat (429 beyond; Telegram: about 1)")
    args = parser.parse_args(argv)
    server = TelegramSimServer(token=args.token, bot_username=args.username, bot_rate=args.bot_rate,
                               chat_rate=args.chat_rate)

    async def start() -> str:
        root = await server.start(args.host, args.port)
        if not args.quiet:
            server.listeners.append(_print_sent)
            print(
                f"Telegram sim for bot @{args.username} (token {args.token}).\n"
                f"  PTB: .base_url('{root}/bot').base_file_url('{root}/file/bot')\n"
                f"  push: curl -s {root}/sim/push_message -d '{{\"chat_id\": 1001, \"text\": \"/start\"}}'",
                file=sys.stderr,
                flush=True,
            )
        return root

    run_until_signalled(start, server.stop)


if __name__ == "__main__":
    main()
