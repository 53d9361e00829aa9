# tipstream worker / simulator image: `docker compose build` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN python -m pip install --no-cache-dir uv

WORKDIR /app
# Dependencies first (cached while only the code changes), exactly as locked.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project
COPY . .
RUN uv sync --frozen --no-dev \
 && useradd --system --uid 10001 --home-dir /app tipstream \
 && mkdir -p /var/lib/tipstream && chown tipstream /var/lib/tipstream

USER tipstream
# The worker's state directory (faust's data): a volume in docker-compose.yml.
ENV PATH=/app/.venv/bin:$PATH \
    TIPSTREAM_DATA_DIR=/var/lib/tipstream
EXPOSE 6066
ENTRYPOINT ["tipstream"]
CMD ["--help"]
