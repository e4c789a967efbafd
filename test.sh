#!/usr/bin/env bash
# Set up (once) everything the tests need, then run the whole suite. Extra args go to pytest.
# Installs with apt (as root, or via sudo): chromium (browser tests), postgresql (Supabase RLS
# tests), wrk and valgrind (benchmark smoke runs); with npm: the CSS toolchain (stale-CSS test).
set -euo pipefail
cd "$(dirname "$0")"
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v wrk >/dev/null || need+=(wrk)
command -v sqlite3 >/dev/null || need+=(sqlite3)
command -v valgrind >/dev/null || need+=(valgrind)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
stamp=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat .venv/.installed-test 2>/dev/null)" != "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
  .venv/bin/python -m pip install -q --disable-pip-version-check $(.venv/bin/python -c \
    "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml','rb'))['project']['optional-dependencies']['test']))")
  echo "$stamp" > .venv/.installed-test
fi
# Again whenever package-lock.json changes (a new devDependency such as axe-core must not meet a
# stale node_modules).
npm_stamp=$(sha256sum package-lock.json | cut -c1-16)
if [ "$(cat node_modules/.installed-test 2>/dev/null)" != "$npm_stamp" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_stamp" > node_modules/.installed-test
fi
exec .venv/bin/python -m pytest "$@"
