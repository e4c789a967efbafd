"""The tracing package stands on its own: import boundaries, no cycles, and a wheel of its own.

The imports are read from the source (AST), so a violation fails here before any reviewer
has to spot it: log/ imports nothing of the app; the app imports only the package's public
surface; nobody imports a library's private module; log/'s parts import each other without
cycles, and the pure core does no I/O.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import log

ROOT = Path(__file__).resolve().parents[2]
APP = {"app", "settings", "cli", "handlers", "middleware", "store", "bench", "tests", "examples"}
OWN = APP | {"log"}
# Outside log/: the package itself and the namespaces its __all__ exports.
PUBLIC = {"log"} | {f"log.{name}" for name in log.__all__ if isinstance(getattr(log, name), type(log))}
CORE_MAY_NOT_USE = {"anyio", "httpx", "sqlite3", "starlette", "socket", "asyncio"}


def imports(path: Path) -> list[str]:
    """Absolute module names a file imports (relative imports resolved within log/)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path}: relative import"
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names if node.module in ("log",) or node.module.startswith("log.")]
    return out


def project_files() -> list[Path]:
    skip = {".venv", "node_modules", ".git", "build"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts)]


def part_of(module: str) -> str:
    """log.core.build -> core; log.tracing -> tracing; log -> (the package's face)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_log_imports_nothing_of_the_app() -> None:
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in (ROOT / "log").rglob("*.py") for m in imports(p) if m.split(".")[0] in APP]
    assert not bad


def test_the_app_imports_only_the_public_surface() -> None:
    app_code = [p for p in project_files() if p.relative_to(ROOT).parts[0] in {"app.py", "settings.py", "cli.py", "handlers", "middleware", "store"}]
    assert len(app_code) > 15
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in app_code for m in imports(p)
           if m.split(".")[0] == "log" and m not in PUBLIC and m.rsplit(".", 1)[0] not in PUBLIC]
    assert not bad


def test_nobody_imports_a_private_module_of_a_library() -> None:
    bad = [f"{p.relative_to(ROOT)}: {m}" for p in project_files() for m in imports(p)
           if m.split(".")[0] not in OWN and any(x.startswith("_") and not x.startswith("__") for x in m.split(".")[1:])]
    assert not bad


def test_the_parts_of_log_form_no_cycle_and_the_core_is_pure() -> None:
    graph: dict[str, set[str]] = {}
    for path in (ROOT / "log").rglob("*.py"):
        rel = path.relative_to(ROOT / "log")
        me = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for m in imports(path):
            if m.startswith("log.") and part_of(m) != me:
                graph.setdefault(me, set()).add(part_of(m))
            if me == "core":
                assert m.split(".")[0] not in CORE_MAY_NOT_USE, f"log/core does I/O: {rel} imports {m}"
    assert graph.get("core", set()) == set(), "log/core imports other parts of the package"

    def visit(node: str, path: list[str]) -> None:
        assert node not in path, f"import cycle: {' -> '.join([*path, node])}"
        for nxt in graph.get(node, ()):
            if nxt != "__init__":
                visit(nxt, [*path, node])

    for start in graph:
        if start != "__init__":
            visit(start, [])


def test_the_wheel_holds_only_the_tracing_package_and_opens_a_log_db(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copytree(ROOT / "log", source / "log", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("app.py", "settings.py", "cli.py"):  # present, as in the checkout, and left out
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "handlers", source / "handlers", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(out)],
                   cwd=source, check=True, capture_output=True)
    (wheel,) = out.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"log"}
    assert {"log/__init__.py", "log/db/schema.sql", "log/db/rollups.sql"} <= set(names)

    venv = tmp_path / "venv"
    # No pip of its own (ensurepip alone takes seconds): this session's pip installs into it.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--disable-pip-version-check",
                    str(wheel)], check=True, capture_output=True)
    script = """
import asyncio, sqlite3, sys
from pathlib import Path
from log import Tracing, TracingConfig
async def main(data):
    async with Tracing(TracingConfig(data_dir=data, sinks=("turso",))) as tracing:
        async with tracing.task("0b5e1f3c-53d0-4d1c-9e8e-5a0a0f6a4a11", "Wheel_Check").step("Open"):
            pass
    return sqlite3.connect(data / "logs.db").execute("SELECT task_name, status FROM task_progress_logs ORDER BY id").fetchall()
print(asyncio.run(main(Path(sys.argv[1]))))
import log; print(log.__file__)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([python, "-c", script, str(tmp_path)], cwd=tmp_path, env=env,
                            check=True, capture_output=True, text=True)
    rows, where = result.stdout.splitlines()
    assert rows == "[('Wheel_Check', 'START'), ('Wheel_Check', 'SUCCESS')]"
    assert where.startswith(str(venv))  # the installed package, not this checkout
