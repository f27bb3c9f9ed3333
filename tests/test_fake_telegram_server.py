"""Prove fakes.telegram_server against the REAL python-telegram-bot Application."""

from __future__ import annotations

import asyncio
import datetime as dtm
import os
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import pytest
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, EndPointNotFound, Forbidden, InvalidToken, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from fakes.telegram_server import TelegramSimServer

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "123456:TEST-TOKEN"
CHAT = 1001


def _png(width: int = 3, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


async def ping(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Again", callback_data="again")]])
    await update.effective_message.reply_text("<b>pong</b>", parse_mode=ParseMode.HTML, reply_markup=keyboard)


async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    await query.answer("ok")
    await query.edit_message_text(f"pressed <i>{query.data}</i>", parse_mode=ParseMode.HTML)


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    file = await update.message.document.get_file()
    data = await file.download_as_bytearray()
    await update.message.reply_text(f"got {update.message.document.file_name}: {bytes(data).decode()}")


@pytest.fixture
async def server():
    srv = TelegramSimServer(TOKEN)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def app(server):
    application = (
        Application.builder().token(TOKEN).base_url(f"{server.root}/bot").base_file_url(f"{server.root}/file/bot").build()
    )
    application.add_handler(CommandHandler("ping", ping))
    application.add_handler(CallbackQueryHandler(on_button))
    application.add_handler(MessageHandler(filters.Document.ALL, on_document))
    await application.initialize()
    await application.start()
    await application.updater.start_polling(poll_interval=0, timeout=1)
    yield application
    await application.updater.stop()
    await application.stop()
    await application.shutdown()


@pytest.fixture
async def bot(server):
    """A plain Bot (no polling) for direct API-call tests."""
    application = (
        Application.builder().token(TOKEN).base_url(f"{server.root}/bot").base_file_url(f"{server.root}/file/bot").build()
    )
    await application.initialize()
    yield application.bot
    await application.shutdown()


async def test_ping_command_replies_with_html_and_keyboard(server, app):
    update = server.push_message(CHAT, "/ping")
    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 5}]
    await server.wait_for(lambda calls: any(c["text"] == "<b>pong</b>" for c in calls))

    [sent] = server.sent(CHAT)
    assert sent["method"] == "sendMessage"
    assert sent["text"] == "<b>pong</b>" and sent["plain"] == "pong"
    assert sent["parse_mode"] == "HTML"
    assert sent["entities"] == [{"type": "bold", "offset": 0, "length": 4}]
    assert sent["reply_markup"] == {"inline_keyboard": [[{"text": "Again", "callback_data": "again"}]]}
    # message ids are per chat and shared with the user's message
    assert sent["message_id"] == update["message"]["message_id"] + 1
    assert isinstance(sent["message"]["date"], int)
    assert sent["message"]["from"]["username"] == "pressure_test_bot"
    assert server.calls[0][0] == "getMe"
    assert server.sent(9999) == []


async def test_group_command_addressed_to_bot(server, app):
    server.push_message(-100555, "/ping@pressure_test_bot", user_id=7, chat_type="supergroup", username="bob")
    [params] = await server.wait_for()
    assert params["chat_id"] == -100555
    # PTB quotes the command message in groups
    assert params["reply_parameters"]["message_id"] == 1
    assert server.sent(-100555)[0]["message"]["reply_to_message"]["from"]["username"] == "bob"


async def test_callback_is_answered_and_message_edited(server, app):
    server.push_message(CHAT, "/ping")
    await server.wait_for()
    mid = server.sent(CHAT)[0]["message_id"]

    qid = server.push_callback(CHAT, mid, "again")
    await server.wait_for(method="editMessageText")
    [answer] = server.calls_of("answerCallbackQuery")
    assert answer["callback_query_id"] == qid and answer["text"] == "ok"
    [edit] = server.edits
    assert edit["plain"] == "pressed again" and edit["message_id"] == mid
    current = server.message(CHAT, mid)
    assert current["text"] == "pressed again"
    assert "reply_markup" not in current  # an edit without reply_markup drops the keyboard, like Telegram
    assert isinstance(current["edit_date"], int)


async def test_document_is_downloaded_by_the_bot(server, app):
    doc = server.add_file(b"symbols: [BTCUSDT]\n", "watch.yaml")
    assert set(doc) == {"file_id", "file_unique_id", "file_name", "mime_type", "file_size"}
    server.push_message(CHAT, "", document=doc)
    [reply] = await server.wait_for()
    assert reply["text"] == "got watch.yaml: symbols: [BTCUSDT]\n"
    assert server.calls_of("getFile")[0]["file_id"] == doc["file_id"]
    assert server.downloads and server.downloads[0].endswith(".yaml")


async def test_photo_and_document_uploads_are_multipart(server, bot):
    png = _png()
    msg = await bot.send_photo(CHAT, photo=png, caption="<b>chart</b>", parse_mode=ParseMode.HTML)
    assert msg.photo[-1].width == 3 and msg.photo[-1].height == 2
    assert msg.caption == "chart"
    doc_msg = await bot.send_document(CHAT, document=b"a,b\n1,2\n", filename="scores.csv", caption="csv")
    assert doc_msg.document.file_name == "scores.csv"

    photo_rec, doc_rec = server.sent(CHAT)
    assert photo_rec["method"] == "sendPhoto" and photo_rec["photo"] == png and photo_rec["caption"] == "<b>chart</b>"
    assert doc_rec["document"] == b"a,b\n1,2\n" and doc_rec["file_name"] == "scores.csv"
    assert doc_rec["mime_type"] == "text/csv"
    assert server.calls_of("sendPhoto")[0]["photo"] == png  # files decoded to bytes in calls

    # sent files can be re-sent by file_id and downloaded again
    again = await bot.send_photo(CHAT, photo=msg.photo[-1].file_id)
    assert server.sent(CHAT)[-1]["photo"] == png
    data = await (await bot.get_file(again.photo[-1].file_id)).download_as_bytearray()
    assert bytes(data) == png

    # the classic bug: BytesIO not rewound after savefig -> empty upload
    with pytest.raises(BadRequest, match="File must be non-empty"):
        await bot.send_photo(CHAT, photo=b"")
    with pytest.raises(BadRequest, match="Image_process_failed"):
        await bot.send_photo(CHAT, photo=b"definitely not an image")


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_retry_after_429(server, bot):
    server.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    with pytest.raises(RetryAfter) as info:
        await bot.send_message(CHAT, "hello")
    retry_after = info.value.retry_after  # int (+ deprecation warning) unless PTB_TIMEDELTA=1
    if isinstance(retry_after, dtm.timedelta):
        retry_after = retry_after.total_seconds()
    assert retry_after == 3
    assert server.errors[-1][2] == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 3",
        "parameters": {"retry_after": 3},
    }
    await bot.send_message(CHAT, "hello")  # fault consumed
    assert [r["text"] for r in server.sent(CHAT)] == ["hello"]
    assert len(server.calls_of("sendMessage")) == 2  # calls include the failed attempt


async def test_forbidden_only_for_the_blocked_chat(server, bot):
    server.fail_next("sendMessage", 403, "Forbidden: bot was blocked by the user", chat_id=2002, times=-1)
    await bot.send_message(CHAT, "fine")
    for _ in range(2):
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(2002, "nope")
    assert server.sent(2002) == [] and len(server.sent(CHAT)) == 1


async def test_telegram_validation_errors(server, bot):
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(CHAT, "x" * 4097)
    # the limit applies after entity parsing: markup does not count
    await bot.send_message(CHAT, "<b>" + "x" * 4096 + "</b>", parse_mode=ParseMode.HTML)
    with pytest.raises(BadRequest, match="Message is too long"):
        await bot.send_message(CHAT, "&lt;" * 4097, parse_mode=ParseMode.HTML)

    for bad in ("<b>unclosed", "BTC < ETH", "line<br>break", "S&P 500", "<span>x</span>", "<b>x</i>"):
        with pytest.raises(BadRequest, match="Can't parse entities"):
            await bot.send_message(CHAT, bad, parse_mode=ParseMode.HTML)
    await bot.send_message(CHAT, "S&amp;P &lt; 5 <code>x</code> <a href='https://x.io/?a=1&amp;b=2'>l</a>", parse_mode="HTML")
    with pytest.raises(BadRequest, match="reserved"):
        await bot.send_message(CHAT, "score 87.5", parse_mode=ParseMode.MARKDOWN_V2)
    with pytest.raises(BadRequest, match="Message text is empty"):
        await bot.send_message(CHAT, "   ")
    with pytest.raises(BadRequest, match="Button_data_invalid"):
        await bot.send_message(
            CHAT, "k", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="x" * 65)]])
        )


async def test_edit_not_modified(server, bot):
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="b")]])
    msg = await bot.send_message(CHAT, "<b>same</b>", parse_mode="HTML", reply_markup=keyboard)
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_text("<b>same</b>", CHAT, msg.message_id, parse_mode="HTML", reply_markup=keyboard)
    edited = await bot.edit_message_text("same", CHAT, msg.message_id, reply_markup=keyboard)  # entities differ
    assert edited.text == "same" and edited.edit_date is not None
    with pytest.raises(BadRequest, match="Message is not modified"):
        await bot.edit_message_reply_markup(CHAT, msg.message_id, reply_markup=keyboard)
    await bot.edit_message_reply_markup(CHAT, msg.message_id, reply_markup=None)
    with pytest.raises(BadRequest, match="Message to edit not found"):
        await bot.edit_message_text("x", CHAT, 999)


async def test_commands_admins_and_misc_methods(server, bot):
    await bot.set_my_commands([BotCommand("ping", "Ping the bot"), ("top", "Top scores")])
    [params] = server.calls_of("setMyCommands")
    assert params["commands"] == [
        {"command": "ping", "description": "Ping the bot"},
        {"command": "top", "description": "Top scores"},
    ]
    assert [c.command for c in await bot.get_my_commands()] == ["ping", "top"]
    assert server.commands[0]["command"] == "ping"
    with pytest.raises(BadRequest, match="Bot_command_invalid"):
        await bot.set_my_commands([("Ping", "uppercase is invalid")])
    await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()

    server.set_admins(-100777, [1, 2])
    admins = await bot.get_chat_administrators(-100777)
    assert [(m.user.id, m.status) for m in admins] == [(1, "creator"), (2, "administrator")]
    assert (await bot.get_chat_member(-100777, 3)).status == "member"
    assert (await bot.get_chat(-100777)).type == "group"
    with pytest.raises(BadRequest, match="no administrators in the private chat"):
        await bot.get_chat_administrators(CHAT)
    assert await bot.send_chat_action(CHAT, "typing") is True
    assert await bot.delete_webhook() is True
    assert await bot.close() is True and await bot.log_out() is True
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("noSuchMethod")


async def test_raw_wire_format_and_long_polling(server):
    base = f"{server.root}/bot{TOKEN}"
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{server.root}/bot123456:WRONG/getMe")
        assert r.status_code == 401 and r.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
        r = await client.post(f"{base}/fooBar")
        assert r.status_code == 404 and r.json() == {"ok": False, "error_code": 404, "description": "Not Found"}

        # JSON body and form body are both accepted
        r = await client.post(f"{base}/sendMessage", json={"chat_id": CHAT, "text": "json"})
        assert r.json()["result"]["text"] == "json"
        r = await client.post(f"{base}/sendMessage", data={"chat_id": str(CHAT), "text": "123"})
        assert r.json()["result"]["text"] == "123"  # free text is never JSON-decoded
        assert server.calls_of("sendMessage")[1] == {"chat_id": CHAT, "text": "123"}
        assert [m["message_id"] for m in (r.json()["result"],)] == [2]

        # long poll: waits up to timeout when empty ...
        t0 = time.monotonic()
        r = await client.post(f"{base}/getUpdates", json={"timeout": 0.3})
        assert r.json() == {"ok": True, "result": []} and time.monotonic() - t0 >= 0.25
        # ... returns early when an update arrives
        poll = asyncio.create_task(client.post(f"{base}/getUpdates", json={"timeout": 5}))
        await asyncio.sleep(0.1)
        t0 = time.monotonic()
        first = server.push_message(CHAT, "hi")
        updates = (await poll).json()["result"]
        assert time.monotonic() - t0 < 1 and updates == [first]
        second = server.push_message(CHAT, "again")
        # updates are kept until confirmed by offset
        r = await client.post(f"{base}/getUpdates", json={"timeout": 0, "limit": 1})
        assert r.json()["result"] == [first]
        r = await client.post(f"{base}/getUpdates", json={"offset": first["update_id"] + 1})
        assert r.json()["result"] == [second]
        r = await client.post(f"{base}/getUpdates", json={"offset": second["update_id"] + 1})
        assert r.json()["result"] == [] and server.pending_updates == []

        # a second concurrent long poll terminates the first with 409 Conflict
        older = asyncio.create_task(client.post(f"{base}/getUpdates", json={"timeout": 5}))
        await asyncio.sleep(0.1)
        r = await client.post(f"{base}/getUpdates", json={"timeout": 0})
        assert (await older).status_code == 409

        r = await client.get(f"{server.root}/file/bot{TOKEN}/documents/missing.yaml")
        assert r.status_code == 404


async def test_second_bot_instance_conflicts(server, bot):
    # PTB's getUpdates connection pool has size 1, so a conflict needs a second bot instance
    other = Application.builder().token(TOKEN).base_url(f"{server.root}/bot").build()
    await other.initialize()
    try:
        older = asyncio.create_task(bot.get_updates(timeout=5))
        await asyncio.sleep(0.1)
        assert await other.bot.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await older
    finally:
        await other.shutdown()


async def test_wrong_token_is_invalid_token(server):
    application = (
        Application.builder().token("123456:WRONG").base_url(f"{server.root}/bot").base_file_url(f"{server.root}/file/bot").build()
    )
    with pytest.raises(InvalidToken):
        await application.initialize()


def test_standalone_runner_prints_root():
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "fakes.telegram_server", "--port", "0", "--token", "123:ABC", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,  # `python -m fakes.telegram_server` runs from the repository root
    )
    try:
        root = proc.stdout.readline().strip()
        assert root.startswith("http://127.0.0.1:")
        me = httpx.get(f"{root}/bot123:ABC/getMe").json()
        assert me["ok"] and me["result"]["id"] == 123 and me["result"]["is_bot"] is True
        pushed = httpx.post(f"{root}/sim/push_message", json={"chat_id": 5, "text": "/start"}).json()
        assert pushed["result"]["message"]["entities"][0]["type"] == "bot_command"
        httpx.post(f"{root}/bot123:ABC/sendMessage", data={"chat_id": "5", "text": "hi"})
        sent = httpx.get(f"{root}/sim/sent", params={"chat_id": 5}).json()["result"]
        assert [s["text"] for s in sent] == ["hi"]
    finally:
        proc.terminate()
        proc.wait(timeout=5)


async def test_flood_limits_when_asked_refuse_with_429_and_retry_after():
    """--bot-rate / --chat-rate: the bot's bucket holds one second's worth; a chat gets one message a second."""
    from fakes.telegram_server import TelegramSimServer
    import httpx
    server = TelegramSimServer(token="1:T", bot_rate=5, chat_rate=1)
    root = await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"{root}/bot1:T") as http:
            codes = [(await http.post("/sendMessage", data={"chat_id": 10 + i, "text": "x"})).status_code
                     for i in range(7)]
            assert codes == [200] * 5 + [429] * 2                       # the bot's burst of 5, then refused
            again = await http.post("/sendMessage", data={"chat_id": 10, "text": "y"})
            body = again.json()
            assert again.status_code == 429 and body["parameters"]["retry_after"] >= 1
            assert body["description"].startswith("Too Many Requests: retry after")
        assert server.flood_refusals == 3 and len(server.sent()) == 5
    finally:
        await server.stop()
