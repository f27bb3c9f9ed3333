"""The daily signed root (receipts.publish): after the first cycle of a UTC day, the previous day's last sealed
manifest is queued once as an outbox notice per configured route, never twice (second cycle, restart)."""
from __future__ import annotations

import io

import pytest

from bot.adapters.console import ConsoleSender
from bot.clock import FakeClock
from bot.config import Config, ConfigError, PublishConfig, load_config
from bot.outbox import DeliveryWorker
from bot.publication import RECIPIENT, WEBHOOK_ADDRESS, RootPublisher, publish_routes
from bot.sealing import Sealer
from bot.store import Store

DAY = 86_400_000
D1 = 1_800_000_000_000 - 1_800_000_000_000 % DAY          # 2027-01-15 00:00 UTC
ROUTES = [(RECIPIENT, "console", "roots")]


def seal_cycle(store: Store, sealer: Sealer, ts: int) -> None:
    store.commit_alert_cycle(dict(ts=ts, duration_s=0.0, requests=0, weight=0, failed={}), [], {}, [], [], [],
                             seal=sealer.prepare(ts, []))


def cycle(store: Store, sealer: Sealer, publisher: RootPublisher, clock: FakeClock, ts: int) -> int:
    """One engine cycle at exchange time `ts` (sealed), then the publisher's turn; the local clock follows."""
    clock.advance(ts / 1000 - clock.time())
    seal_cycle(store, sealer, ts)
    return publisher.after_cycle(ts)


def test_one_root_per_day_after_the_first_cycle_and_none_repeated_after_a_restart(tmp_path):
    path = tmp_path / "p.db"
    store, sealer, clock = Store(path), Sealer.for_database(path), FakeClock(time=D1 / 1000)
    pub = RootPublisher(store, ROUTES, clock)
    assert cycle(store, sealer, pub, clock, D1 + 36_000_000) == 0           # day 1: nothing before it
    assert cycle(store, sealer, pub, clock, D1 + DAY - 60_000) == 0         # day 1's last cycle, 23:59
    assert cycle(store, sealer, pub, clock, D1 + DAY + 60_000) == 1         # day 2's first cycle: day 1's root
    assert cycle(store, sealer, pub, clock, D1 + DAY + 120_000) == 0        # day 2's second cycle: nothing more
    store.close()

    store = Store(path)                                                      # the restart, same day
    pub = RootPublisher(store, ROUTES, clock)
    assert cycle(store, sealer, pub, clock, D1 + DAY + 180_000) == 0
    [row] = store.outbox_rows()
    assert row["key"] == f"root-2027-01-15:{RECIPIENT}:console:roots:root" and row["signal_ids"] == []
    last = store.manifest_for(D1 + DAY - 60_000)
    notice = row["notice"]
    assert notice["title"] == "Signed root for 2027-01-15"
    for fact in (last["manifest"]["root"], last["hash"], last["signature"], last["public_key"],
                 f"Records: {last['manifest']['count']}", "2027-01-15 23:59:00 UTC", "python -m bot verify",
                 "docs/receipts.md"):
        assert fact in notice["text"], fact
    assert row["created"] == D1 + DAY + 60_000                               # queued at the local clock's time

    assert cycle(store, sealer, pub, clock, D1 + 2 * DAY + 5_000) == 1      # day 3: day 2's root (00:03)
    assert store.outbox_rows()[-1]["notice"]["title"] == "Signed root for 2027-01-16"
    assert store.manifest_for(D1 + DAY + 180_000)["hash"] in store.outbox_rows()[-1]["notice"]["text"]
    store.close()


def test_a_day_the_bot_was_down_publishes_the_last_root_before_it_once(tmp_path):
    path = tmp_path / "p.db"
    store, sealer, clock = Store(path), Sealer.for_database(path), FakeClock(time=D1 / 1000)
    pub = RootPublisher(store, ROUTES, clock)
    cycle(store, sealer, pub, clock, D1 + 1000)
    assert cycle(store, sealer, pub, clock, D1 + 3 * DAY) == 1              # down for two days: day 1's root
    assert cycle(store, sealer, pub, clock, D1 + 4 * DAY) == 1              # then day 4's (the 00:00 cycle)
    assert [r["notice"]["title"][-10:] for r in store.outbox_rows()] == ["2027-01-15", "2027-01-18"]
    store.close()


async def test_the_published_root_is_delivered_once_by_the_outbox(tmp_path):
    path = tmp_path / "p.db"
    store, sealer, clock = Store(path), Sealer.for_database(path), FakeClock(time=D1 / 1000)
    pub = RootPublisher(store, ROUTES, clock)
    cycle(store, sealer, pub, clock, D1 + 1000)
    cycle(store, sealer, pub, clock, D1 + DAY + 1000)
    out = io.StringIO()
    worker = DeliveryWorker(store, {"console": ConsoleSender(stream=out)}, clock=clock)
    assert await worker.deliver_due() == 1 and await worker.deliver_due() == 0
    assert out.getvalue().count("Signed root for 2027-01-15") == 1
    assert store.recent_signals() == []                                     # a notice is never a signal
    store.close()


def test_routes_come_from_config_and_the_environment_only():
    assert publish_routes(PublishConfig()) == []
    cfg = PublishConfig(telegram_chat="@dpb_roots", discord_webhook_url_env="ROOTS_WEBHOOK")
    assert publish_routes(cfg, {}) == [(RECIPIENT, "telegram", "@dpb_roots")]
    assert publish_routes(cfg, {"ROOTS_WEBHOOK": "https://discord.invalid/api/webhooks/1/x"}) == [
        (RECIPIENT, "telegram", "@dpb_roots"), (RECIPIENT, "webhook", WEBHOOK_ADDRESS)]
    assert publish_routes(PublishConfig(telegram_chat=-1001234567890), {}) == [
        (RECIPIENT, "telegram", "-1001234567890")]
    assert Config().receipts.publish == PublishConfig()


def test_a_bad_channel_name_is_a_configuration_error(tmp_path):
    f = tmp_path / "bot.yaml"
    f.write_text("receipts:\n  publish:\n    telegram_chat: dpb_roots\n")
    with pytest.raises(ConfigError, match=r'bot.yaml:3: .*telegram_chat.*"@my_channel"'):
        load_config(f)
