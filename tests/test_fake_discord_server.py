"""Drive the REAL discord.py client (REST + gateway + app commands) and httpx webhooks against DiscordSimServer."""

from __future__ import annotations

import asyncio
import io
import json
import zlib

import aiohttp
import discord
import discord.gateway
import discord.http
import httpx
import pytest
from discord import app_commands

from fakes.discord_server import DiscordSimServer, patch_discord

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


@pytest.fixture
async def server():
    srv = DiscordSimServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def bot(server: DiscordSimServer):
    """A real discord.Client + CommandTree logged in and connected to the sim."""
    with patch_discord(server):
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        tree = app_commands.CommandTree(client)

        @tree.command(name="ping", description="Health check")
        async def ping(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("pong")

        @tree.command(name="score", description="Pressure score of a symbol")
        @app_commands.describe(symbol="Perpetual symbol, e.g. BTCUSDT")
        async def score(interaction: discord.Interaction, symbol: str) -> None:
            await interaction.response.defer(thinking=True)
            await asyncio.sleep(0.05)
            embed = discord.Embed(title=f"{symbol} pressure", description="Score 87/100", colour=0xE74C3C)
            embed.add_field(name="Funding", value="+0.045%", inline=True)
            await interaction.followup.send(embed=embed)

        @tree.command(name="top", description="Top pressure symbols")
        async def top(interaction: discord.Interaction) -> None:
            await interaction.response.defer()
            embed = discord.Embed(title="Top 3", description="1. BTC 91\n2. ETH 88\n3. SOL 80")
            await interaction.edit_original_response(
                embed=embed, attachments=[discord.File(io.BytesIO(PNG_1x1), "top.png")]
            )
            original = await interaction.original_response()
            assert original.embeds[0].title == "Top 3"

        @tree.command(name="private", description="Ephemeral answer")
        async def private(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("only you", ephemeral=True)

        @tree.command(name="slow", description="Answers too late")
        async def slow(interaction: discord.Interaction) -> None:
            await asyncio.sleep(0.3)
            await interaction.response.send_message("late")

        errors: list[BaseException] = []

        @tree.error
        async def on_tree_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
            errors.append(error)

        client.tree_errors = errors  # type: ignore[attr-defined]

        @score.autocomplete("symbol")
        async def score_ac(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
            syms = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
            return [app_commands.Choice(name=s, value=s) for s in syms if s.startswith(current.upper())]

        await client.login("sim-token")
        task = asyncio.create_task(client.connect(reconnect=True))
        try:
            await server.wait_ready(timeout=5)
            await asyncio.wait_for(client.wait_until_ready(), 5)
            yield client, tree
        finally:
            await client.close()
            await asyncio.wait_for(task, 5)


def _posts(server: DiscordSimServer, fragment: str) -> list[tuple]:
    return [c for c in server.calls if c[0] == "POST" and fragment in c[1]]


async def test_login_gateway_and_state(server: DiscordSimServer, bot) -> None:
    client, _tree = bot
    assert client.user is not None and client.user.id == server.bot_user_id
    assert client.application_id == server.application_id
    guild = client.get_guild(server.guild_id)
    assert guild is not None and not guild.unavailable
    assert {c.id for c in guild.text_channels} == {3333, 3334}
    paths = [c[1] for c in server.calls]
    assert "/api/v10/users/@me" in paths and "/api/v10/oauth2/applications/@me" in paths
    # discord.py asks for transport compression (zlib-stream, or zstd-stream if a zstd module is
    # importable); the sim honours zlib-stream and answers zstd-stream with plain text frames
    conn = server.gateway_connections[-1]
    assert conn["v"] == "10" and conn["encoding"] == "json"
    assert conn["compress"] == discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE
    expected = "zlib-stream" if conn["compress"] == "zlib-stream" else None
    assert conn["effective_compression"] == expected
    ident = server.identifies[-1]
    assert ident["intents"] == discord.Intents.default().value
    assert "token" not in ident


async def test_sync_and_slash_commands(server: DiscordSimServer, bot) -> None:
    client, tree = bot
    synced = await tree.sync()
    assert {c.name for c in synced} == {"ping", "score", "top", "private", "slow"}
    names = {c["name"]: c for c in server.synced_commands}
    assert set(names) == {"ping", "score", "top", "private", "slow"}
    assert ("PUT", f"/api/v10/applications/{server.application_id}/commands") in [c[:2] for c in server.calls]
    assert names["score"]["options"][0]["name"] == "symbol"
    assert all(c["id"] == str(s.id) for s in synced for c in server.synced_commands if c["name"] == s.name)

    # /ping: immediate type-4 response, with_response body parsed by discord.py
    token = await server.send_interaction("ping")
    responses = await server.wait_interaction_responses(token, 1)
    assert responses[0]["_kind"] == "callback"
    assert responses[0]["type"] == 4
    assert responses[0]["data"]["content"] == "pong"
    cb_calls = [c for c in server.calls if "/callback" in c[1]]
    assert cb_calls, "interaction callback not called"
    msgs = server.channel_messages(3333)
    assert msgs[-1]["content"] == "pong" and msgs[-1]["type"] == 20

    # /score: defer then follow-up with an embed (replaces the "thinking" message)
    token = await server.send_interaction("score", [{"name": "symbol", "value": "BTCUSDT"}])
    responses = await server.wait_interaction_responses(token, 2)
    assert responses[0]["type"] == 5
    assert responses[1]["_kind"] == "followup"
    embed = responses[1]["embeds"][0]
    assert embed["title"] == "BTCUSDT pressure"
    assert embed["fields"][0] == {"name": "Funding", "value": "+0.045%", "inline": True}
    assert responses[1]["_message_id"] == responses[0]["_message_id"]
    original = [m for m in server.channel_messages(3333) if m["id"] == responses[0]["_message_id"]][0]
    assert original["embeds"][0]["title"] == "BTCUSDT pressure" and not original["flags"] & 128

    # autocomplete (interaction type 4 → callback type 8)
    token = await server.send_interaction("score", [{"name": "symbol", "value": "e", "focused": True}], type=4)
    responses = await server.wait_interaction_responses(token, 1)
    assert responses[0]["type"] == 8
    assert responses[0]["data"]["choices"] == [{"name": "ETHUSDT", "value": "ETHUSDT"}]

    # /top: defer, then PATCH @original with an embed + PNG (multipart), then GET @original
    token = await server.send_interaction("top")
    responses = await server.wait_interaction_responses(token, 2)
    assert [r["_kind"] for r in responses] == ["callback", "edit_original"]
    assert responses[1]["embeds"][0]["title"] == "Top 3"
    await server.wait_for(lambda: any(token in c[1] and c[0] == "GET" for c in server.calls))
    top_msg = [m for m in server.channel_messages(3333) if m["id"] == responses[0]["_message_id"]][0]
    assert top_msg["attachments"][0]["filename"] == "top.png" and top_msg["embeds"][0]["title"] == "Top 3"

    # ephemeral: recorded as a response, not visible in the channel
    before = len(server.channel_messages(3333))
    token = await server.send_interaction("private")
    responses = await server.wait_interaction_responses(token, 1)
    assert responses[0]["data"]["flags"] == 64 and responses[0]["data"]["content"] == "only you"
    assert len(server.channel_messages(3333)) == before

    # too late for the acknowledgement deadline → 404 10062 like Discord
    server.interaction_ack_timeout = 0.1
    token = await server.send_interaction("slow")
    await server.wait_for(lambda: client.tree_errors, timeout=3)
    assert isinstance(client.tree_errors[0].__cause__ or client.tree_errors[0].original, discord.NotFound)
    assert server.interaction_responses(token) == []
    server.interaction_ack_timeout = 3.0
    assert not client.tree_errors[1:]

    # a second acknowledgement is rejected like Discord does (40060)
    async with httpx.AsyncClient() as http:
        token = await server.send_interaction("ping")
        await server.wait_interaction_responses(token, 1)
        cb = [c for c in server.calls if token in c[1] and c[1].endswith("/callback")][0]
        r = await http.post(f"{server.root}{cb[1]}", json={"type": 4, "data": {"content": "again"}})
        assert r.status_code == 400 and r.json()["code"] == 40060


async def test_channel_send_embed_file_and_429_retry(server: DiscordSimServer, bot) -> None:
    client, _tree = bot
    channel = client.get_channel(3333)
    assert isinstance(channel, discord.TextChannel)
    embed = discord.Embed(title="ETHUSDT 91/100", description="Longs crowded")
    msg = await channel.send(embed=embed)
    assert msg.id and msg.embeds[0].title == "ETHUSDT 91/100"
    stored = server.channel_messages(3333)
    assert stored[-1]["embeds"][0]["title"] == "ETHUSDT 91/100"
    assert stored[-1]["author"]["id"] == str(server.bot_user_id)

    # attachment (multipart payload_json + files[0])
    msg = await client.get_partial_messageable(3334).send("chart", file=discord.File(io.BytesIO(PNG_1x1), "chart.png"))
    att = server.channel_messages(3334)[-1]["attachments"][0]
    assert att["filename"] == "chart.png" and att["content_type"] == "image/png" and att["width"] == 1
    assert msg.attachments[0].size == len(PNG_1x1)
    assert server.attachment_data[int(att["id"])] == PNG_1x1

    # 429 on a channel send: discord.py sleeps retry_after and retries; message arrives once
    before = len(server.channel_messages(3333))
    server.fail_next(
        "/channels/3333/messages",
        429,
        {"message": "You are being rate limited.", "retry_after": 0.3, "global": False},
    )
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await channel.send("after rate limit")
    assert loop.time() - t0 >= 0.3
    after = server.channel_messages(3333)
    assert len(after) == before + 1 and after[-1]["content"] == "after rate limit"
    assert len([c for c in _posts(server, "/channels/3333/messages") if c[2] and c[2].get("content") == "after rate limit"]) == 2

    # validation errors surface as discord.HTTPException with Discord's codes
    with pytest.raises(discord.HTTPException) as ei:
        await channel.send("x" * 2001)
    assert ei.value.code == 50035 and ei.value.status == 400
    with pytest.raises(discord.HTTPException) as ei:
        await channel.send(embed=discord.Embed(description="d" * 4097))
    assert ei.value.code == 50035
    big = discord.Embed(title="t")
    for i in range(26):
        big.add_field(name=f"f{i}", value="v")
    with pytest.raises(discord.HTTPException):
        await channel.send(embed=big)
    with pytest.raises(discord.HTTPException) as ei:
        await channel.send(embeds=[discord.Embed(description="d" * 4000), discord.Embed(description="d" * 2500)])
    assert "MAX_EMBED_SIZE_EXCEEDED" in json.dumps(server.calls[-1]) or ei.value.code == 50035
    with pytest.raises(discord.NotFound) as ei:
        await client.get_partial_messageable(9999).send("nowhere")
    assert ei.value.code == 10003

    # DM channel
    user = await client.fetch_user(4444)
    await user.send("hello trader")
    assert server.dm_messages(4444)[-1]["content"] == "hello trader"


async def test_gateway_reconnect_resume(server: DiscordSimServer, bot) -> None:
    client, tree = bot
    await tree.sync()
    resumed = asyncio.Event()

    @client.event
    async def on_resumed() -> None:
        resumed.set()

    await server.request_reconnect()
    await asyncio.wait_for(resumed.wait(), 5)
    assert len(server.identifies) == 1 and len(server.resumes) == 1
    assert len(server.gateway_connections) == 2
    token = await server.send_interaction("ping")
    responses = await server.wait_interaction_responses(token, 1)
    assert responses[0]["data"]["content"] == "pong"


async def test_webhook_execute_httpx(server: DiscordSimServer) -> None:
    url = server.webhook_url(5555, "hooktoken")
    assert url == f"{server.root}/api/webhooks/5555/hooktoken"
    embed = {"title": "BTCUSDT 88/100", "description": "Shorts squeezed", "color": 0x2ECC71}
    async with httpx.AsyncClient() as http:
        r = await http.post(url, params={"wait": "true"}, json={"embeds": [embed]})
        assert r.status_code == 200
        msg = r.json()
        assert msg["webhook_id"] == "5555" and msg["embeds"][0]["title"] == "BTCUSDT 88/100"
        assert msg["embeds"][0]["type"] == "rich"
        assert {"x-ratelimit-bucket", "x-ratelimit-remaining", "x-ratelimit-reset-after"} <= set(r.headers.keys())

        r = await http.post(url, json={"content": "no wait"})
        assert r.status_code == 204 and r.content == b""

        server.fail_next("/webhooks/5555", 429, {"message": "You are being rate limited.", "retry_after": 0.25, "global": False})
        r = await http.post(url, params={"wait": "true"}, json={"embeds": [embed]})
        assert r.status_code == 429
        assert r.json()["retry_after"] == 0.25
        assert r.headers["Retry-After"] == "1" and r.headers["X-RateLimit-Remaining"] == "0" and "Via" in r.headers
        await asyncio.sleep(r.json()["retry_after"])
        r = await http.post(url, params={"wait": "true"}, json={"embeds": [embed]})
        assert r.status_code == 200

        r = await http.post(url, params={"wait": "true"}, json={"embeds": [{"description": "x" * 4097}]})
        assert r.status_code == 400 and r.json()["code"] == 50035
        r = await http.post(url, params={"wait": "true"}, json={"embeds": [{"title": str(i)} for i in range(11)]})
        assert r.status_code == 400 and r.json()["code"] == 50035
        r = await http.post(url, json={})
        assert r.status_code == 400 and r.json()["code"] == 50006

        # multipart with payload_json + a PNG
        files = {"files[0]": ("chart.png", PNG_1x1, "image/png")}
        data = {"payload_json": json.dumps({"content": "chart", "attachments": [{"id": 0, "filename": "chart.png"}]})}
        r = await http.post(url, params={"wait": "true"}, data=data, files=files)
        assert r.status_code == 200 and r.json()["attachments"][0]["filename"] == "chart.png"

        assert len(server.webhook_messages(5555)) == 4
        assert [m["id"] for m in server.webhook_messages(5555)] == [m["id"] for m in server.channel_messages(3333)]

        server.delete_webhook(5555)
        r = await http.post(url, params={"wait": "true"}, json={"embeds": [embed]})
        assert r.status_code == 404 and r.json() == {"message": "Unknown Webhook", "code": 10015}

        r = await http.post(server.webhook_url(6666, "other"), json={"content": "x"}, params={"wait": "1"})
        assert r.status_code == 200
        r = await http.post(f"{server.root}/api/webhooks/6666/wrong", json={"content": "x"})
        assert r.status_code == 401 and r.json()["code"] == 50027

        server.fail_next("/channels/3333/messages", 404, {"message": "Unknown Channel", "code": 10003})
        r = await http.post(f"{server.api_base}/channels/3333/messages", json={"content": "x"}, headers={"Authorization": "Bot t"})
        assert r.status_code == 404 and r.json()["code"] == 10003


async def test_discordpy_partial_webhook(server: DiscordSimServer) -> None:
    with patch_discord(server):
        async with aiohttp.ClientSession() as session:
            hook = discord.Webhook.partial(5555, "hooktoken", session=session)
            server.fail_next("/webhooks/5555/hooktoken", 429, {"message": "You are being rate limited.", "retry_after": 0.1, "global": False})
            msg = await hook.send(embed=discord.Embed(title="via discord.py"), wait=True)
            assert msg.embeds[0].title == "via discord.py"
            assert len(server.webhook_messages(5555)) == 1
            server.delete_webhook(5555)
            with pytest.raises(discord.NotFound):
                await hook.send("gone", wait=True)


async def test_raw_gateway_zlib_stream(server: DiscordSimServer) -> None:
    """The sim honours compress=zlib-stream exactly like Discord (binary frames ending in Z_SYNC_FLUSH)."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(f"{server.gateway_url}?v=10&encoding=json&compress=zlib-stream") as ws:
            inflater = zlib.decompressobj()

            async def recv() -> dict:
                msg = await ws.receive(timeout=5)
                assert msg.type == aiohttp.WSMsgType.BINARY
                assert msg.data[-4:] == b"\x00\x00\xff\xff"
                return json.loads(inflater.decompress(msg.data))

            hello = await recv()
            assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
            await ws.send_str(json.dumps({"op": 1, "d": None}))
            assert (await recv())["op"] == 11
            await ws.send_str(json.dumps({"op": 2, "d": {"token": "t", "intents": 1, "properties": {}}}))
            ready = await recv()
            assert ready["t"] == "READY" and ready["s"] == 1
            assert ready["d"]["resume_gateway_url"] == server.gateway_url
            guild = await recv()
            assert guild["t"] == "GUILD_CREATE" and guild["s"] == 2
            assert [c["id"] for c in guild["d"]["channels"]] == ["3333", "3334"]
    # the client closed with 1000: the session ends, nothing to dispatch interactions to
    await server.wait_for(lambda: not server.connected)
    await server.wait_for(lambda: not server._sessions)
    with pytest.raises(RuntimeError):
        await server.send_interaction("ping")
