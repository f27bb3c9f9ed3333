"""Webhook mode: alerts POSTed as embeds to Discord channel webhooks with httpx (no bot account).

discord.py's `Webhook.from_url` accepts only discord.com URLs, so loopback tests could not use it; a plain
`POST {url}?wait=true` with `{"content", "embeds", "allowed_mentions"}` is all Discord needs. Outcomes:

* 2xx: delivered. `wait=true` makes Discord answer with the message (and errors synchronously).
* 429: `DeliveryError(retry_after=...)` from the body's `retry_after` (or `Retry-After`): the outbox keeps the
  message and sends it after that delay. A digest split over several messages (`render`) is posted one message
  at a time (`send_part`); the outbox records each one posted, so it resumes where it stopped.
* 404 (10015 Unknown Webhook) / 401 (50027 Invalid Webhook Token) / 403: the webhook is gone; permanent, the
  route is disabled and reported once (`RouteBook`, through `DiscordAdapter.disable_route`).
* other 4xx: the payload was refused; the message is dropped (permanent), the route stays enabled.
* 5xx, timeouts, network errors: retried with backoff by the outbox.

When a response says the bucket is empty (`X-RateLimit-Remaining: 0`), the next POST to that webhook waits
for `X-RateLimit-Reset-After` (at most MAX_PREEMPTIVE_WAIT_S) instead of collecting a 429.
URLs are secrets: errors and logs name the webhook by its configured name only.
"""
from __future__ import annotations

import logging

import httpx

from ...clock import SYSTEM_CLOCK, Clock
from ...logsetup import REDACTOR
from ...outbox import DeliveryError, Digest
from .format import digest_messages
from .routes import WEBHOOK, RouteBook, WebhookTarget

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
MAX_PREEMPTIVE_WAIT_S = 5.0
GONE = {401, 403, 404}


class WebhookSender:
    channel = WEBHOOK

    def __init__(self, targets: dict[str, WebhookTarget], routes: RouteBook, http: httpx.AsyncClient | None = None,
                 clock: Clock = SYSTEM_CLOCK):
        self._routes = routes
        self.targets = targets                     # route address (name) -> target (with the secret URL)
        self.http = http
        self._own_http = http is None
        self.clock = clock                         # bucket waits (tests inject a FakeClock)
        self._not_before: dict[str, float] = {}    # address -> clock.monotonic() time the bucket refills
        self.posts = 0

    async def start(self) -> None:
        if self.http is None:
            self.http = httpx.AsyncClient(timeout=TIMEOUT_S, headers={"User-Agent": "derivatives-pressure-bot"})

    async def close(self) -> None:
        if self.http is not None and self._own_http:
            await self.http.aclose()
            self.http = None

    def render(self, digest: Digest) -> list[dict]:
        return digest_messages(digest)

    async def send_part(self, address: str, part: dict, digest: Digest) -> None:
        self._routes.check_route(WEBHOOK, address)
        target = self.targets.get(address)
        if target is None:
            raise DeliveryError(f"webhook {address!r} is no longer configured", permanent=True)
        if self.http is None:
            await self.start()
        await self._post(target, part)

    async def _post(self, target: WebhookTarget, message: dict) -> None:
        wait = self._not_before.get(target.name, 0) - self.clock.monotonic()
        if wait > 0:
            await self.clock.sleep(min(wait, MAX_PREEMPTIVE_WAIT_S))
        payload = {"embeds": message["embeds"], "allowed_mentions": {"parse": []}}
        if message.get("content"):
            payload["content"] = message["content"]
        try:
            r = await self.http.post(target.url, params={"wait": "true"}, json=payload)
        except httpx.HTTPError as e:   # the exception text may hold the URL: name the type only
            raise DeliveryError(f"webhook {target.name}: network {type(e).__name__}") from None
        self.posts += 1
        self._note_bucket(target.name, r)
        if r.is_success:
            return
        body = _json(r)
        detail = f"{r.status_code} {body.get('code', '')} {body.get('message', '')}".strip()
        if r.status_code == 429:
            retry = _retry_after(r, body)
            raise DeliveryError(f"webhook {target.name}: rate limited ({detail})", retry_after=retry)
        if r.status_code in GONE:
            raise self._routes.route_failed(WEBHOOK, target.name, f"webhook {target.name}: {detail}")
        if 400 <= r.status_code < 500:
            raise DeliveryError(REDACTOR.redact(f"webhook {target.name}: payload refused: {detail} {body.get('errors', '')}"),
                                permanent=True)
        raise DeliveryError(f"webhook {target.name}: server error {detail}")

    def _note_bucket(self, name: str, r: httpx.Response) -> None:
        try:
            if r.headers.get("X-RateLimit-Remaining") == "0":
                self._not_before[name] = self.clock.monotonic() + float(r.headers.get("X-RateLimit-Reset-After", "0"))
        except ValueError:
            pass

    async def was_delivered(self, key: str) -> bool | None:
        return None   # a webhook cannot read its channel: after a crash mid-send the message is sent again


def _json(r: httpx.Response) -> dict:
    try:
        data = r.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _retry_after(r: httpx.Response, body: dict) -> float:
    for v in (body.get("retry_after"), r.headers.get("Retry-After")):
        try:
            if v is not None:
                return max(0.0, float(v))
        except (TypeError, ValueError):
            continue
    return 1.0
