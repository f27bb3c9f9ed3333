# The bot in a container: slim Python, installed as a package, run as an unprivileged user.
#   docker build -t pressure-bot .
#   docker run --rm -e DATABASE_URL=postgres://... -e BOT_SIGNING_KEY=... -e TELEGRAM_BOT_TOKEN=... pressure-bot
#   docker run ... pressure-bot python -m bot run --role delivery        # one role per container (docs/deploy.md)
# Without DATABASE_URL the state is SQLite in /app/data: mount a volume there, or it is lost with the container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WEB_HOST=0.0.0.0

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip install . && rm -rf /root/.cache
COPY config ./config

RUN useradd --create-home --uid 10001 bot \
    && mkdir -p /app/data \
    && chown -R bot:bot /app/data /app/config/watchlists
USER bot

CMD ["python", "-m", "bot", "run"]
