"""The image's command, run the way the image would run it, without a Docker engine:
  * a fresh venv with only requirements.lock installed (built once per test session);
  * the build context as `COPY . .` sees it (.dockerignore applied) in a read-only directory;
  * ENV, USER and CMD read from the Dockerfile and used as written (as root, the server drops to
    the Dockerfile's numeric USER with setpriv; otherwise it runs as the current user);
  * DATA_DIR on a writable temp dir, PORT a free port, K_SERVICE set as on Cloud Run, and
    LOG_DB_EPHEMERAL=1 (there is no Turso here: the log database is a file, by explicit choice).
Then GET /health is 200, a page renders (with the demo-mode banner: no Supabase here), the
start-up lines are structured JSON on stdout, and SIGTERM ends it with exit code 0.

The first run downloads the locked packages from PyPI (pip's cache makes later runs quicker)."""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.app import free_port
from tests.app.test_dockerfile import env_vars, exec_form, instructions

ROOT = Path(__file__).resolve().parents[2]
SECRET = "image-test-secret-value"


# --- .dockerignore (pure) ------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex over "/"-separated relative paths ("**" spans dirs)."""
    parts = []
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts.append("(?:[^/]+/)*")
        else:
            parts.append(fnmatch.translate(segment).removeprefix("(?s:").removesuffix(")\\Z").replace(".*", "[^/]*") + "/")
    return re.compile("".join(parts).removesuffix("/").replace("(?:[^/]+/)*$", ".*"))


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(is_exception, regex) per pattern line, in order; comments and blank lines dropped."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _pattern_regex(line.lstrip("!").strip())))
    return rules


def is_ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern matching a directory matches
    everything under it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negate, regex in rules:
        if any(regex.fullmatch(p) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_matching() -> None:
    rules = dockerignore_rules("# c\n.git\ntests\n**/__pycache__\n**/*.md\n!README.md\nviews/styles\n.env.*\n")
    assert is_ignored(".git/config", rules) and is_ignored("tests/test_x.py", rules)
    assert is_ignored("log/__pycache__/x.pyc", rules) and is_ignored("__pycache__/a.pyc", rules)
    assert is_ignored("docs/notes.md", rules) and is_ignored("x.md", rules) and not is_ignored("README.md", rules)
    assert is_ignored("views/styles/app.css", rules) and not is_ignored("views/static/app.css", rules)
    assert is_ignored(".env.local", rules) and not is_ignored("app.py", rules)
    assert not is_ignored("log/tests_helper.py", rules)


def build_context(dest: Path) -> list[str]:
    """Copy what `COPY . .` would copy into dest; returns the relative paths copied."""
    rules = dockerignore_rules((ROOT / ".dockerignore").read_text())
    copied = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        # Pruning is safe: the only exception pattern (!README.md) is not under an ignored dir.
        dirnames[:] = [d for d in dirnames if not is_ignored(rel_dir + d, rules)]
        for name in filenames:
            rel = rel_dir + name
            if not is_ignored(rel, rules):
                (dest / rel_dir).mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, dest / rel)
                copied.append(rel)
    return copied


# --- the image's pieces ----------------------------------------------------------------------


def _world_reachable(path: Path) -> bool:
    """Can any user execute this file (every directory on the way searchable)?"""
    real = path.resolve()
    if not real.exists() or not real.stat().st_mode & stat.S_IXOTH:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in real.parents)


def base_python(drop_privileges: bool) -> str:
    """The image's Python minor (3.12) when one is usable here, else another 3.11+ Python.
    When the server drops root, the interpreter and its stdlib must be reachable by that user
    (pyenv under /root is not), hence Debian's /usr/bin/python3 as the fallback."""
    candidates = [
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12"))),
        "/usr/local/bin/python3.12",
        sys.executable,
        "/usr/bin/python3",
    ]
    for candidate in candidates:
        path = Path(candidate)
        if not path.exists() or (drop_privileges and not _world_reachable(path)):
            continue
        probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info >= (3, 11))"],
                               capture_output=True, text=True)
        if probe.stdout.strip() == "True":
            return candidate
    raise AssertionError(f"no usable Python 3.11+ among {candidates}")


def dockerfile() -> tuple[list[str], dict[str, str], str | None]:
    parsed = instructions((ROOT / "Dockerfile").read_text())
    cmd = exec_form([args for keyword, args in parsed if keyword == "CMD"][-1])
    assert cmd is not None
    users = [args for keyword, args in parsed if keyword == "USER"]
    return cmd, env_vars(parsed), users[-1] if users else None


def _tempdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)  # mkdtemp makes 0700; the server's user must get in
    return path


def _remove(path: Path) -> None:
    for dirpath, _, _ in os.walk(path):
        os.chmod(dirpath, 0o755)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def image_venv() -> Iterator[Path]:
    """A venv with exactly requirements.lock, as `pip install -r requirements.lock` in the image."""
    root = _tempdir("image-venv-")
    venv = root / "venv"
    python = base_python(drop_privileges=os.geteuid() == 0)
    # No pip of its own (ensurepip alone takes seconds): this session's pip installs into it
    # (--python), the same packages the image's pip would install from the lock.
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120, stdin=subprocess.DEVNULL)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--disable-pip-version-check", "-q", "-r", str(ROOT / "requirements.lock")],
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield venv
    _remove(root)


def _read_only(path: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            p = os.path.join(dirpath, name)
            os.chmod(p, os.stat(p).st_mode & ~0o222)
    for dirpath, _, _ in os.walk(path, topdown=False):
        os.chmod(dirpath, os.stat(dirpath).st_mode & ~0o222)


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError("no Uid line")


def test_the_image_command_serves_pages(image_venv: Path) -> None:
    cmd, image_env, user = dockerfile()
    work = _tempdir("image-run-")
    try:
        app_dir, data_dir = work / "app", work / "data"
        app_dir.mkdir()
        copied = build_context(app_dir)
        assert "app.py" in copied and "requirements.lock" in copied
        assert not any(p.startswith(("tests/", ".git/", "views/styles/")) for p in copied)
        _read_only(app_dir)
        before = sorted(str(p) for p in app_dir.rglob("*"))

        prefix: list[str] = []
        expected_uid = os.geteuid()
        if os.geteuid() == 0 and user is not None:
            uid, _, gid = user.partition(":")
            assert uid.isdigit() and (not gid or gid.isdigit()), f"USER {user} must be numeric"
            expected_uid = int(uid)
            prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid or uid}", "--clear-groups"]
        data_dir.mkdir()
        os.chown(data_dir, expected_uid, -1)

        port = free_port()
        env = {
            "PATH": f"{image_venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(app_dir),
            **image_env,
            "PORT": str(port),
            "DATA_DIR": str(data_dir),
            "K_SERVICE": "image-test",
            "LOG_DB_EPHEMERAL": "1",
            "SECRET_KEY": SECRET,
        }
        out, err = work / "stdout.txt", work / "stderr.txt"
        with out.open("ab") as stdout, err.open("ab") as stderr:
            process = subprocess.Popen([*prefix, *cmd], cwd=app_dir, env=env, stdout=stdout, stderr=stderr,
                                       stdin=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            health = None
            while health is None:
                assert process.poll() is None, err.read_text() + out.read_text()
                try:
                    health = httpx.get(f"{url}/health", timeout=2)
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "server did not start\n" + err.read_text()
                    time.sleep(0.05)  # polling for readiness with a deadline
            assert health.status_code == 200 and health.json()["status"] == "ok"
            assert _uid_of(process.pid) == expected_uid

            page = httpx.get(url + "/", timeout=5, headers={"user-agent": "image-test"})
            assert page.status_code == 200 and "<html" in page.text
            assert "Demo mode:" in page.text  # Cloud Run without Supabase
            assert httpx.get(url + "/static/app.css", timeout=5).status_code == 200
            trace_id = page.headers["x-trace-id"]

            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert code == 0, err.read_text()

        lines = [json.loads(line) for line in out.read_text().splitlines()]
        diagnostics = [line for line in lines if "table" not in line]
        rows = [line for line in lines if line.get("table") == "api_logs"]
        assert any(d["severity"] == "INFO" and d["message"].startswith("start-up configuration:") for d in diagnostics)
        assert any(d["severity"] == "WARNING" and d["message"].startswith("DEMO MODE") for d in diagnostics)
        assert any(d["severity"] == "WARNING" and d["message"].startswith("LOGS PER INSTANCE") for d in diagnostics)
        assert [r["row"]["trace_id"] for r in rows] == [trace_id]  # /health and /static are not logged
        assert rows[0]["httpRequest"]["userAgent"] == "image-test"
        assert SECRET not in out.read_text() + err.read_text()
        assert sorted(str(p) for p in app_dir.rglob("*")) == before, "the server wrote into the code directory"
    finally:
        _remove(work)
