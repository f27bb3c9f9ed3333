"""Telegram adapter: commands in, replies and alert digests out (python-telegram-bot 22, same asyncio loop).

It only translates. An Update becomes a `commands.Context` (+ command name) and `commands.dispatch` answers it;
the `Reply` becomes Telegram messages: HTML parse mode with every dynamic value escaped, tables in <pre>, buttons
as an inline keyboard whose callback_data is the button's command ("top long 15"; pressing it runs the command
and edits the message in place), images via sendPhoto, documents via sendDocument. Alert digests from the outbox
go through `TelegramSender`, which the app registers from `senders()` (the `bot.adapters.base.ChatAdapter`
protocol). Handlers reach the bot only through the `bot.queries.Queries` port passed in; what a command needs
(an attachment, an admin, whether it edits) is on its `Command`.

Lifecycle (bot-notes §5): `start()` builds the Application and runs initialize / setMyCommands (failure logged,
never fatal) / start / updater.start_polling(drop_pending_updates=True); `stop()` undoes it in order. No
run_polling(): the scheduler and other adapters share the loop. A start that cannot reach the API raises, leaving
nothing half-started, and the app retries it with back-off (`bot.app.AdapterSupervisor`); a rejected token raises
`AdapterRefused`. `probe()` (getMe) tells the app whether the API is reachable again after a failed delivery.

Limits (bot-notes §4): messages are split at 4096 characters on line boundaries before markup is applied
(never inside a tag); requests go through AIORateLimiter (30 msg/s overall, 20 msg/min per group). A 429 on an
interactive reply is waited out and retried; a 429 on an alert digest is handed back to the outbox
(`DeliveryError(retry_after=...)`), which keeps the message and sends it later, once. `Forbidden` (the user
blocked the bot / the bot left the group) and "chat not found" are permanent: the outbox marks the rows failed,
app._on_permanent marks the watchlist inactive and calls `disable_route`, after which nothing more is sent to
that chat until it talks to the bot again (a /start from it makes the watchlist active again: the command
layer's doing).

Groups have their own watchlist (`tg-g<abs(chat id)>`); commands that change it need a chat admin (getChatMember
status creator/administrator, or an anonymous admin posting as the group).
"""
from __future__ import annotations

import asyncio
import html
import logging
import os
import re
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Awaitable, Callable

from telegram import (BotCommand, BotCommandScopeChat, InlineKeyboardButton, InlineKeyboardMarkup,
                      LinkPreviewOptions, Message, Update)
from telegram.constants import ChatMemberStatus, ChatType, MessageLimit, ParseMode
from telegram.error import (BadRequest, ChatMigrated, Forbidden, InvalidToken, RetryAfter, TelegramError)
from telegram.ext import (AIORateLimiter, Application, BaseUpdateProcessor, CallbackQueryHandler, CommandHandler,
                          ContextTypes, Defaults, MessageHandler, filters)

from .. import report
from ..clock import SYSTEM_CLOCK, Clock
from ..commands import REGISTRY, Button, Context, Reply, dispatch, telegram_commands
from ..config import TelegramConfig
from ..engine import Recipient
from ..logsetup import install_redaction
from ..outbox import DeliveryError, Digest, Sender
from ..queries import Queries
from .base import AdapterRefused

log = logging.getLogger(__name__)

MAX_TEXT = int(MessageLimit.MAX_TEXT_LENGTH)          # 4096
MAX_CAPTION = int(MessageLimit.CAPTION_LENGTH)        # 1024
MAX_CALLBACK_DATA = 64                                # bytes
MAX_IMPORT_BYTES = 64 * 1024                          # /import: larger documents are refused before download
REPLY_RETRIES = 2                                     # RetryAfter retries for interactive replies
OUTBOX = "outbox"                                     # rate_limit_args of outbox sends: never retry inline
SEP = "\n\n"                                          # between blocks of one message
APOLOGY = "Sorry, something went wrong on my side; it has been logged. Please try again in a minute."
ANONYMOUS_ADMIN_BOT = 1087968824                      # @GroupAnonymousBot: "from" of anonymous group admins


# --------------------------------------------------------------------------------------------- rendering (pure)
def esc(value: Any) -> str:
    """HTML-escape one dynamic value for parse_mode=HTML (&, <, >)."""
    return html.escape(str(value), quote=False)


def tg_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units), so emoji never push a message over the limit."""
    return len(text.encode("utf-16-le")) // 2


_STYLES = {"b": ("<b>", "</b>"), "i": ("<i>", "</i>"), "code": ("<code>", "</code>")}


@dataclass
class Block:
    """Plain-text lines with a style each (None, "b", "i", "code"), or a <pre> block (`pre=True`).

    Text is kept plain until the last moment: splitting happens on plain lines, then each chunk is escaped and
    wrapped, so a split can never land inside a tag or an entity."""
    lines: list[tuple[str, str | None]]
    pre: bool = False

    def render(self, lines: list[tuple[str, str | None]] | None = None) -> str:
        lines = self.lines if lines is None else lines
        if self.pre:
            return "<pre>" + esc("\n".join(t for t, _ in lines)) + "</pre>"
        out = []
        for text, style in lines:
            if style and text:
                a, b = _STYLES[style]
                out.append(a + esc(text) + b)
            else:
                out.append(esc(text))
        return "\n".join(out)


def _cut_line(block: Block, text: str, style: str | None, limit: int) -> list[tuple[str, str | None]]:
    """One line that alone would not fit: cut into pieces that each fit once escaped and wrapped."""
    if tg_len(block.render([(text, style)])) <= limit:
        return [(text, style)]
    budget = max(limit - (tg_len(block.render([("x", style)])) - 1), 1)     # room left by the tags
    pieces, start, used = [], 0, 0
    for i, ch in enumerate(text):
        w = tg_len(esc(ch))
        if used + w > budget and i > start:
            pieces.append((text[start:i], style))
            start, used = i, 0
        used += w
    pieces.append((text[start:], style))
    return pieces


def pack(blocks: list[Block], limit: int = MAX_TEXT) -> list[str]:
    """Render blocks into as few messages as possible, each at most `limit` characters (Telegram counts the text
    after entity parsing; we count the markup too, so we are always under). A block that fits is never split; a
    block too big for one message is split on line boundaries, each chunk wrapped in its own tags."""
    messages: list[str] = []
    cur: list[str] = []

    def size(parts: list[str]) -> int:
        return tg_len(SEP.join(parts))

    def flush() -> None:
        if cur:
            messages.append(SEP.join(cur))
            cur.clear()

    for block in blocks:
        if not block.lines:
            continue
        whole = block.render()
        if size([*cur, whole]) <= limit:
            cur.append(whole)
            continue
        flush()
        if tg_len(whole) <= limit:
            cur.append(whole)
            continue
        lines = [piece for text, style in block.lines for piece in _cut_line(block, text, style, limit)]
        chunk: list[tuple[str, str | None]] = []
        for line in lines:
            if chunk and tg_len(block.render([*chunk, line])) > limit:
                cur.append(block.render(chunk))
                flush()
                chunk = []
            chunk.append(line)
        if chunk:
            cur.append(block.render(chunk))
    flush()
    return [m.strip("\n") for m in messages if m.strip()]


def _text_block(text: str, style: str | None = None) -> Block:
    return Block([(line, style) for line in text.split("\n")])


def reply_blocks(reply: Reply, with_text: bool = True) -> list[Block]:
    """A Reply as blocks: bold title (+ the table caption, e.g. /top's summary line), the table in <pre>, text."""
    blocks: list[Block] = []
    head: list[tuple[str, str | None]] = []
    if reply.title:
        head.append((reply.title, "b"))
    if reply.table is not None and reply.table.caption:
        head.append((reply.table.caption, None))
    if head:
        blocks.append(Block(head))
    if reply.table is not None and reply.table.rows:
        table = report.format_table(reply.table.header, reply.table.rows)
        blocks.append(Block([(line, None) for line in table.split("\n")], pre=True))
    if with_text and reply.text:
        blocks.append(_text_block(reply.text))
    return blocks


def reply_messages(reply: Reply) -> list[str]:
    return pack(reply_blocks(reply)) or ["(empty reply)"]


def digest_blocks(digest: Digest) -> list[Block]:
    """An alert digest: a bold headline, then per signal its title (bold) and details, then how to dig in.
    A notice: its title (bold), then its text."""
    if digest.notice:
        return [Block([(digest.notice["title"], "b")]), _text_block(digest.notice["text"])]
    n = len(digest.signals)
    head = f"🔔 {n} alert{'s' if n != 1 else ''}" + (" (held during quiet hours)" if digest.held else "")
    blocks = [Block([(head, "b")])]
    for sig in digest.signals:
        lines = [(report.alert_title(sig), "b"), (report.alert_details(sig), None)]
        context = report.alert_context(sig)
        if context:
            lines.append((context, "i"))
        blocks.append(Block(lines))
    blocks.append(Block([("/signal ID shows the exact inputs of a signal · /signals lists yours", "i")]))
    return blocks


def digest_messages(digest: Digest, limit: int = MAX_TEXT) -> list[str]:
    return pack(digest_blocks(digest), limit)


_TAG_RE = re.compile(r"</?(?:b|i|code|pre)>")


def html_to_plain(text: str) -> str:
    """Our own markup back to plain text (fallback if Telegram ever rejects the HTML)."""
    return html.unescape(_TAG_RE.sub("", text))


def keyboard(buttons: list[Button]) -> InlineKeyboardMarkup | None:
    row = []
    for b in buttons:
        if not 1 <= len(b.command.encode()) <= MAX_CALLBACK_DATA:
            log.warning("telegram: button %r skipped: callback data must be 1-64 bytes", b.label)
            continue
        row.append(InlineKeyboardButton(b.label, callback_data=b.command))
    return InlineKeyboardMarkup([row]) if row else None


def watchlist_id(chat_id: int, chat_type: str) -> str:
    """tg-<chat> for a private chat, tg-g<abs(chat)> for a group / supergroup."""
    return f"tg-{chat_id}" if chat_type == ChatType.PRIVATE else f"tg-g{abs(chat_id)}"


def retry_after_seconds(err: RetryAfter) -> float:
    with warnings.catch_warnings():            # int vs timedelta deprecation dance (PTB 22.2+)
        warnings.simplefilter("ignore")
        value = err.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


# ------------------------------------------------------------------------------------------ PTB building blocks
class TelegramRateLimiter(AIORateLimiter):
    """PTB's AIORateLimiter (30 requests/s overall, 20/min per group), with RetryAfter handling chosen per call:
    interactive replies (no rate_limit_args) wait retry_after and retry up to `max_retries` times; outbox sends
    pass rate_limit_args=OUTBOX and get the RetryAfter at once, so the outbox keeps the message and retries it later
    instead of holding a delivery slot (and shutdown) for the whole flood wait."""

    def __init__(self, max_retries: int = REPLY_RETRIES, **kwargs: Any):
        super().__init__(max_retries=0, **kwargs)
        self.reply_retries = max_retries

    async def process_request(self, callback, args, kwargs, endpoint, data, rate_limit_args):  # noqa: ANN001
        retries = 0 if rate_limit_args == OUTBOX else int(rate_limit_args or self.reply_retries)
        return await super().process_request(callback, args, kwargs, endpoint, data, retries)


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Updates of one chat are handled in order, different chats concurrently: a /chart rendering in one chat
    never delays another chat's /score, and one user's /watch then /unwatch never swap."""

    def __init__(self, max_concurrent_updates: int = 64):
        super().__init__(max_concurrent_updates)
        self._locks: dict[int, list] = {}     # chat id -> [lock, users]

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        if chat is None:
            await coroutine
            return
        entry = self._locks.setdefault(chat.id, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                await coroutine
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                self._locks.pop(chat.id, None)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


class _Refusal(Exception):
    """Answer the user with this text and do nothing else (e.g. an /import file that is too large)."""


# ------------------------------------------------------------------------------------------------------ adapter
class TelegramAdapter:
    """A `bot.adapters.base.ChatAdapter`: commands in, replies and alert digests out."""
    channel = "telegram"

    def __init__(self, cfg: TelegramConfig, queries: Queries, token: str, api_base_url: str | None = None, *,
                 reply_retries: int = REPLY_RETRIES, max_import_bytes: int | None = None):
        if not token:
            raise ValueError("a Telegram bot token is required (TELEGRAM_BOT_TOKEN)")
        install_redaction()                    # the token is in every request URL that httpx logs
        self.cfg = cfg
        self.queries = queries
        self._token = token
        self.api_root = (api_base_url or self.cfg.api_base_url).rstrip("/")
        self.reply_retries = reply_retries
        self.max_import_bytes = max_import_bytes or MAX_IMPORT_BYTES
        self.allowed = set(self.cfg.allowed_user_ids)
        self.admins = set(self.cfg.admin_ids)
        self.app: Application | None = None
        # Poll for updates once started? Hosted roles (bot.roles) run several processes on one bot token and let
        # exactly one poll (Telegram refuses two getUpdates at once): the others start with poll=False and only
        # send; the one in charge calls start_polling()/stop_polling() as it gains or loses that charge.
        self.poll = True
        self.disabled: dict[int, str] = {}     # chat id -> why we stopped sending there
        self.sender = TelegramSender(lambda: self.bot, self.disabled, self._migrated)

    @classmethod
    def from_env(cls, cfg: TelegramConfig, queries: Queries, **options: Any) -> "TelegramAdapter":
        """Token from TELEGRAM_BOT_TOKEN (never from a file); API root from TELEGRAM_API_BASE_URL or the config."""
        token = os.environ.get("TELEGRAM_BOT_TOKEN", "").strip()
        return cls(cfg, queries, token, os.environ.get("TELEGRAM_API_BASE_URL") or None, **options)

    def __repr__(self) -> str:                 # never show the token
        return f"TelegramAdapter(api_root={self.api_root!r})"

    @property
    def bot(self):
        return self.app.bot if self.app is not None else None

    # ------------------------------------------------------------------------------------------- lifecycle
    def build_application(self) -> Application:
        app = (Application.builder()
               .token(self._token)
               .base_url(f"{self.api_root}/bot")
               .base_file_url(f"{self.api_root}/file/bot")
               .defaults(Defaults(parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True)))
               .rate_limiter(TelegramRateLimiter(max_retries=self.reply_retries))
               .concurrent_updates(PerChatUpdateProcessor())
               .job_queue(None)                # scheduling is the app's own AsyncIOScheduler
               .build())
        for name in REGISTRY:
            app.add_handler(CommandHandler(name, self._on_command))
        with_document = "|".join(re.escape(c.name) for c in REGISTRY.values() if c.needs_attachment)
        if with_document:                      # a document whose caption is the command (e.g. /import)
            app.add_handler(MessageHandler(
                filters.Document.ALL & filters.CaptionRegex(rf"(?i)^/(?:{with_document})(@\w+)?(\s|$)"),
                self._on_command))
        app.add_handler(MessageHandler(filters.COMMAND, self._on_unknown))
        app.add_handler(CallbackQueryHandler(self._on_callback))
        app.add_error_handler(self._on_error)
        return app

    async def start(self) -> None:
        app = self.build_application()
        try:
            await app.initialize()             # getMe: a bad token fails here, loudly
        except InvalidToken:
            await app.shutdown()
            raise AdapterRefused(f"Telegram rejected the bot token (TELEGRAM_BOT_TOKEN) at {self.api_root}") from None
        except BaseException:
            await app.shutdown()
            raise
        self.app = app
        try:
            await app.start()
            if self.poll:
                await self.start_polling()
        except BaseException:
            await self.stop()                  # never leave a half-started Application behind
            raise
        if not self.poll:
            log.info("telegram: sending only (another process polls) via %s as @%s", self.api_root,
                     app.bot.username)

    async def start_polling(self) -> None:
        """Set the command menu and poll for updates (at start, or when this process takes over polling)."""
        app = self.app
        if app is None or app.updater is None or app.updater.running:
            return
        await self.set_commands()
        await app.updater.start_polling(poll_interval=0.0, timeout=self.cfg.poll_timeout_s,
                                        drop_pending_updates=True, allowed_updates=["message", "callback_query"])
        log.info("telegram: polling %s as @%s", self.api_root, app.bot.username)

    async def stop_polling(self) -> None:
        """Stop polling, keep sending (this process is no longer the one in charge of polling)."""
        app = self.app
        if app is not None and app.updater is not None and app.updater.running:
            await app.updater.stop()
            log.info("telegram: stopped polling (sending only)")

    async def probe(self) -> None:
        """Raise unless the Bot API answers (getMe); the app asks after a failed delivery, until it passes."""
        bot = self.bot
        if bot is None:
            raise RuntimeError("not started")
        await bot.get_me()

    async def set_commands(self) -> None:
        """The command menu from the registry (admins get theirs in their own chat); failure is only logged."""
        bot = self.bot
        try:
            await bot.set_my_commands([BotCommand(n, d) for n, d in telegram_commands()])
        except Exception as e:
            log.warning("telegram: setMyCommands failed (the bot works, the command menu may be stale): %s", e)
            return
        for admin in sorted(self.admins):
            try:
                await bot.set_my_commands([BotCommand(n, d) for n, d in telegram_commands(admin=True)],
                                          scope=BotCommandScopeChat(admin))
            except Exception as e:
                log.info("telegram: admin command menu for %s not set: %s", admin, e)

    async def stop(self) -> None:
        app, self.app = self.app, None
        if app is None:
            return
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()
            if app.running:
                await app.stop()
        finally:
            await app.shutdown()
        log.info("telegram: stopped")

    # ----------------------------------------------------------------------------------------- ChatAdapter
    def senders(self) -> dict[str, Sender]:
        return {self.channel: self.sender}

    def recipients(self) -> list[Recipient]:
        return []                              # chats are watchlists: the app routes those itself

    def disable_route(self, channel: str, address: str, error: str) -> None:
        """Called by the app after a permanent failure: no more sends to that chat until it writes to us again."""
        if channel != self.channel:
            return
        try:
            self.disabled[int(address)] = error
        except ValueError:
            return
        log.info("telegram: chat %s disabled: %s", address, error)

    # -------------------------------------------------------------------------------------- update -> Context
    def _allowed(self, user) -> bool:
        return user is not None and (not self.allowed or user.id in self.allowed or user.id in self.admins)

    async def _refuse(self, update: Update) -> None:
        user = update.effective_user
        log.info("telegram: refused user %s (not in telegram.allowed_user_ids)", user.id if user else None)
        text = (f"Sorry, this bot is private. Your Telegram user id is {user.id if user else '?'}; "
                "ask the operator to add it to telegram.allowed_user_ids.")
        if update.callback_query is not None:
            await update.callback_query.answer("Sorry, this bot is private.", show_alert=True)
        elif update.effective_message is not None:
            await update.effective_message.reply_text(esc(text))

    def _watchlist_id(self, chat) -> str:
        own = watchlist_id(chat.id, chat.type)
        try:
            hit = self.queries.watchlists.by_telegram_chat(chat.id)
        except Exception:
            hit = None
        return hit[0] if hit else own

    async def _is_chat_admin(self, chat, user, message: Message | None) -> bool:
        if message is not None and message.sender_chat is not None and message.sender_chat.id == chat.id:
            return True                        # an anonymous admin, posting as the group itself
        if user is None or user.id == ANONYMOUS_ADMIN_BOT:
            return False
        try:
            member = await self.bot.get_chat_member(chat.id, user.id)
        except TelegramError as e:
            log.warning("telegram: getChatMember(%s, %s) failed, treating as non-admin: %s", chat.id, user.id, e)
            return False
        return member.status in (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)

    async def context_for(self, update: Update, name: str, args: list[str]) -> Context:
        chat, user = update.effective_chat, update.effective_user
        private = chat.type == ChatType.PRIVATE
        if private:
            display = user.full_name or (user.username and f"@{user.username}") or str(user.id)
        else:
            display = chat.title or f"group {chat.id}"
        cmd = REGISTRY.get(name)
        can_edit = True
        if not private and cmd is not None and cmd.edits:
            can_edit = await self._is_chat_admin(chat, user, update.effective_message)
        return Context(queries=self.queries, user_id=self._watchlist_id(chat), platform="telegram", args=list(args),
                       display_name=display, identity={"telegram_chat_id": chat.id, "name": display[:100]},
                       is_admin=user is not None and user.id in self.admins, can_edit=can_edit)

    async def run_command(self, name: str, ctx: Context) -> Reply:
        return await dispatch(name, ctx)

    async def _migrated(self, recipient: str, old: int, new: int) -> None:
        """A group became a supergroup: follow it (the watchlist keeps its id, its chat id is updated)."""
        try:
            if self.queries.watchlists.get(recipient) is not None:
                await self.queries.watchlists.set_fields(recipient, telegram_chat_id=new)
        except Exception as e:
            log.warning("telegram: could not record the migration of %s: %s", recipient, e)

    def _seen(self, chat_id: int) -> None:
        if self.disabled.pop(chat_id, None) is not None:
            log.info("telegram: chat %s is back; sending to it again", chat_id)

    # ------------------------------------------------------------------------------------------------ handlers
    @staticmethod
    def _command_of(message: Message) -> tuple[str, str | None, list[str]]:
        text = message.text or message.caption or ""
        parts = text.split()
        m = re.match(r"/([A-Za-z0-9_]+)(?:@(\w+))?$", parts[0]) if parts else None
        if not m:
            return "", None, []
        return m.group(1).lower(), m.group(2), parts[1:]

    async def _on_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or update.effective_chat is None:
            return
        name, target, args = self._command_of(message)
        if target and target.lower() != (self.bot.username or "").lower():
            return                             # /cmd@another_bot (caption imports are not filtered by PTB)
        if not self._allowed(update.effective_user):
            await self._refuse(update)
            return
        self._seen(update.effective_chat.id)
        ctx = await self.context_for(update, name, args)
        cmd = REGISTRY.get(name)
        try:
            if cmd is not None and cmd.needs_attachment and ctx.can_edit:
                ctx.attachment = await self._attachment(message)
            reply = await self.run_command(name, ctx)
        except _Refusal as e:
            reply = Reply(text=str(e), error=True)
        await self.send_reply(message, reply)

    async def _on_unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message, chat = update.effective_message, update.effective_chat
        if message is None or chat is None:
            return
        name, target, args = self._command_of(message)
        if not name:
            return
        if target and target.lower() != (self.bot.username or "").lower():
            return                             # meant for another bot
        if chat.type != ChatType.PRIVATE and not target:
            return                             # in groups, only commands addressed to us get a "did you mean"
        if not self._allowed(update.effective_user):
            await self._refuse(update)
            return
        reply = await self.run_command(name, await self.context_for(update, name, args))
        await self.send_reply(message, reply)

    async def _on_callback(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if not self._allowed(update.effective_user):
            await self._refuse(update)
            return
        parts = (query.data or "").split()
        if not parts or update.effective_chat is None:
            await query.answer()
            return
        self._seen(update.effective_chat.id)
        name, args = parts[0].lower(), parts[1:]
        answered = False
        try:
            reply = await self.run_command(name, await self.context_for(update, name, args))
            if reply.error:
                await query.answer(reply.text[:200], show_alert=True)
                answered = True
                return
            await query.answer()
            answered = True
            texts = reply_messages(reply)
            message = query.message
            if (reply.image is None and reply.document is None and len(texts) == 1
                    and isinstance(message, Message) and message.text is not None):
                try:
                    await query.edit_message_text(texts[0], reply_markup=keyboard(reply.buttons))
                except BadRequest as e:
                    if "not modified" not in e.message.lower():
                        raise
                return
            await self.send_reply(None, reply, chat_id=update.effective_chat.id)
        finally:
            if not answered:
                try:
                    await query.answer()
                except TelegramError:
                    pass

    async def _attachment(self, message: Message) -> bytes | None:
        """The YAML document of /import: attached to the message (caption /import) or the message replied to.
        Refused before downloading when the file is declared larger than the limit; checked again after."""
        doc = message.document
        if doc is None and message.reply_to_message is not None:
            doc = message.reply_to_message.document
        if doc is None:
            return None
        limit = self.max_import_bytes
        too_big = f"That file is too large to import ({{}} bytes; a watchlist is at most {limit} bytes)."
        if doc.file_size and doc.file_size > limit:
            raise _Refusal(too_big.format(doc.file_size))
        file = await doc.get_file()
        if file.file_size and file.file_size > limit:
            raise _Refusal(too_big.format(file.file_size))
        data = bytes(await file.download_as_bytearray())
        if len(data) > limit:
            raise _Refusal(too_big.format(len(data)))
        return data

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        err = context.error
        log.error("telegram: error handling an update: %s: %s", type(err).__name__, err, exc_info=err)
        if not isinstance(update, Update):
            return
        try:
            if update.callback_query is not None:
                await update.callback_query.answer("Sorry, something went wrong.")
            elif update.effective_message is not None and not isinstance(err, Forbidden):
                await update.effective_message.reply_text(esc(APOLOGY))
        except Exception as e:                 # the apology itself failed (e.g. the network is down): just log
            log.debug("telegram: apology not delivered: %s", e)

    # ------------------------------------------------------------------------------------------ Reply -> chat
    async def send_reply(self, message: Message | None, reply: Reply, chat_id: int | None = None) -> None:
        """Send a Reply as a reply to `message` (quoted in groups), or to `chat_id`."""
        bot = self.bot
        target = chat_id if chat_id is not None else message.chat_id

        async def text(html_text: str, markup=None) -> None:
            if message is not None:
                await message.reply_text(html_text, reply_markup=markup)
            else:
                await bot.send_message(target, html_text, reply_markup=markup)

        markup = keyboard(reply.buttons)
        if reply.image is not None or reply.document is not None:
            caption = "\n".join(pack(reply_blocks(reply)))
            rest: list[str] = []
            if tg_len(caption) > MAX_CAPTION:
                caption = "\n".join(pack(reply_blocks(reply, with_text=False), MAX_CAPTION))
                rest = pack([_text_block(reply.text)]) if reply.text else []
            media_markup = None if rest else markup
            if reply.image is not None:
                kw = dict(photo=reply.image, caption=caption or None, filename="chart.png", reply_markup=media_markup)
                await (message.reply_photo(**kw) if message is not None else bot.send_photo(target, **kw))
            else:
                name, content = reply.document
                kw = dict(document=content, filename=name, caption=caption or None, reply_markup=media_markup)
                await (message.reply_document(**kw) if message is not None else bot.send_document(target, **kw))
            for i, t in enumerate(rest):
                await text(t, markup if i == len(rest) - 1 else None)
            return
        texts = reply_messages(reply)
        for i, t in enumerate(texts):
            await text(t, markup if i == len(texts) - 1 else None)


# ------------------------------------------------------------------------------------------------ outbox sender
class TelegramSender:
    """The outbox's Telegram channel: one digest -> one or more HTML messages (`render`, split at 4096 on line
    boundaries) to the chat id in `address`, sent one part at a time (`send_part`). Which parts went out is the
    outbox's to record (`parts_sent`), so a retry or a restart never repeats the first ones.

    Errors map to the outbox's contract: RetryAfter -> DeliveryError(retry_after) (kept, sent later); Forbidden
    or "chat not found" -> permanent; anything else (network, timeouts, 5xx) -> retried with backoff. After a
    RetryAfter every part to any chat is refused at once until it has passed (on `clock`, which tests replace
    with a FakeClock). A chat that migrated to a supergroup is followed for the parts still to send."""
    channel = "telegram"

    def __init__(self, bot: Callable[[], Any], disabled: dict[int, str],
                 on_migrated: Callable[[str, int, int], Awaitable[None]], clock: Clock = SYSTEM_CLOCK):
        self._bot = bot                         # the running Bot, or None before start / after stop
        self._disabled = disabled               # chat id -> why: the adapter's, cleared when the chat writes again
        self._on_migrated = on_migrated         # (recipient, old chat id, new chat id)
        self.clock = clock
        self._migrated: dict[int, int] = {}     # old chat id -> the supergroup it became
        self._flood_until = 0.0                 # on clock.monotonic()
        # waits for this message's turn in the bot's rate shared with other processes (hosted delivery workers:
        # bot.roles.shared_pacer); None in one process, where the rate limiter of this process is the bot's
        self.pace: Callable[[], Awaitable[None]] | None = None

    async def was_delivered(self, key: str) -> bool | None:
        return None                             # Telegram has no idempotency key: cannot tell

    def render(self, digest: Digest) -> list[str]:
        return digest_messages(digest)

    async def send_part(self, address: str, part: str, digest: Digest) -> None:
        bot = self._bot()
        if bot is None:
            raise DeliveryError("telegram adapter is not running")
        chat_id: int | str
        if address.startswith("@") and len(address) > 1:   # a public channel by name (receipts.publish)
            chat_id = address
        else:
            try:
                chat_id = int(address)
            except ValueError:
                raise DeliveryError(f"not a Telegram chat id: {address!r}", permanent=True) from None
        chat_id = self._migrated.get(chat_id, chat_id)
        if chat_id in self._disabled:
            raise DeliveryError(f"chat {chat_id} disabled after: {self._disabled[chat_id]}", permanent=True)
        wait = self._flood_until - self.clock.monotonic()
        if wait > 0:
            raise DeliveryError(f"Telegram flood control: waiting {wait:.1f}s more", retry_after=wait)
        if self.pace is not None:
            await self.pace()
        sent_to = await self._send_one(bot, chat_id, part, digest)
        if sent_to != chat_id and isinstance(chat_id, int):
            self._migrated[int(address)] = sent_to

    async def _send_one(self, bot, chat_id: int, text: str, digest: Digest, migrated: bool = False) -> int:
        try:
            await bot.send_message(chat_id, text, rate_limit_args=OUTBOX)
            return chat_id
        except RetryAfter as e:
            secs = retry_after_seconds(e)
            self._flood_until = max(self._flood_until, self.clock.monotonic() + secs)
            raise DeliveryError(f"Telegram flood control: retry after {secs:g}s", retry_after=secs) from None
        except Forbidden as e:
            raise DeliveryError(f"Forbidden: {e.message}", permanent=True) from None
        except ChatMigrated as e:
            if migrated:
                raise DeliveryError(f"chat migrated twice: {e.message}") from None
            log.warning("telegram: chat %s migrated to %s", chat_id, e.new_chat_id)
            await self._on_migrated(digest.recipient, chat_id, e.new_chat_id)
            return await self._send_one(bot, e.new_chat_id, text, digest, migrated=True)
        except BadRequest as e:
            low = e.message.lower()
            if "chat not found" in low or "user is deactivated" in low or "peer_id_invalid" in low:
                raise DeliveryError(f"BadRequest: {e.message}", permanent=True) from None
            if "can't parse entities" in low:     # our markup is wrong: never lose the alert over it
                log.error("telegram: HTML rejected (%s); sending the digest as plain text", e.message)
                await bot.send_message(chat_id, html_to_plain(text), parse_mode=None, rate_limit_args=OUTBOX)
                return chat_id
            raise DeliveryError(f"BadRequest: {e.message}") from None
        except InvalidToken as e:
            raise DeliveryError(f"Telegram rejected the bot token: {e.message}") from None
        except TelegramError as e:              # NetworkError, TimedOut, 5xx: retried with backoff
            raise DeliveryError(f"{type(e).__name__}: {e.message}") from None
