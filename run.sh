#!/usr/bin/env bash
# Set up (once) and run the app on the embedded default: SQLite + local accounts, no services.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
if ! cmp -s requirements.lock .venv/.installed-runtime 2>/dev/null; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  cp requirements.lock .venv/.installed-runtime
fi
echo "Serving on http://127.0.0.1:${PORT:-8000}"
# No uvicorn access log: it prints raw query strings (tokens included); the app logs requests itself.
exec .venv/bin/python -m uvicorn app:app --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" --no-access-log
