# Runtime image for the Starlette app (ASGI app `app:app` at the repo root).
# The CSS is prebuilt and committed (views/static/app.css), so no Node stage is needed.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DATA_DIR=/tmp/data \
    PORT=8080

WORKDIR /app

# Dependencies first, from the fully pinned lock, so code edits reuse this layer.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock

# Fixed ids so volume ownership is predictable; --no-log-init avoids a huge sparse lastlog.
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app

# Code stays root-owned: the app user can read it but not rewrite it. The context is
# filtered by .dockerignore (no .git, .venv, tests, node_modules, .env, ...).
COPY . .

# Numeric, so runtimes that enforce runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

EXPOSE 8080

# exec replaces sh so uvicorn is PID 1 and receives SIGTERM directly. On SIGTERM uvicorn stops
# accepting, finishes in-flight requests (at most 4 s), runs the lifespan shutdown (log sinks
# flushed within 3 s, app.py LOG_FLUSH_DEADLINE; worker-id lease released within 1 s): inside
# Cloud Run's 10 s before SIGKILL. Afterwards uvicorn re-raises the signal it caught; the
# `trap '' TERM` it inherits turns that into a clean exit 0 instead of death by SIGTERM (143);
# uvicorn installs its own SIGTERM handler while serving, so shutdown is still graceful.
# WEB_CONCURRENCY=N (uvicorn reads it) runs N worker processes, each with its own CSV files and
# leased worker id; login rate limits and the Supabase refresh single-flight are per process.
# The app writes its own request log (api_logs), hence no uvicorn access log.
CMD ["sh", "-c", "trap '' TERM; exec uvicorn app:app --host 0.0.0.0 --port \"${PORT:-8080}\" --proxy-headers --forwarded-allow-ips=\"*\" --timeout-graceful-shutdown 4 --no-access-log"]
