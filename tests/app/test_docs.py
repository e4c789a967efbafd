"""Documentation is part of the product: every setting the code reads is in docs/settings.md, and
the README's map names every folder of the tree and nothing that is not there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())

# Folders the map must name even when they hold no Python file.
ALWAYS_MAPPED = {"examples", "docs", "tests", "bench"}


def settings_read_by_code() -> set[str]:
    # The app's own settings, and the tracing package's options it builds its config from.
    source = (ROOT / "settings.py").read_text() + (ROOT / "log" / "config.py").read_text()
    return set(re.findall(r'get\("([A-Z][A-Z0-9_]+)"', source))


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", doc, flags=re.M))
    names = settings_read_by_code()
    assert len(names) > 10
    missing = names - documented
    assert not missing, f"settings missing from docs/settings.md: {sorted(missing)}"


def test_readme_quick_start_has_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^    (\./\S+)$", quick_start, flags=re.M)
    assert commands == ["./run.sh", "./test.sh"]
    assert "./test.sh" in (ROOT / ".ci" / "run").read_text()


def test_readme_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text()
    targets = {t.split("#", 1)[0] for t in re.findall(r"\]\(([^)]+)\)", readme) if "://" not in t}
    assert {"docs/tracing.md", "docs/deploy.md", "docs/settings.md"} <= targets
    missing = sorted(t for t in targets if not (ROOT / t).exists())
    assert not missing, f"README links to missing files: {missing}"


# --- the map ---------------------------------------------------------------------------------


def map_entries(readme: str) -> list[str]:
    """Paths the README's map names ("log/core/", "app.py"), from its ```text block.

    One entry per line: two spaces of indent per level under the folder above, the name, then
    at least two spaces and what it does. Folders end with "/".
    """
    section = readme.split("\n## Map\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    parents: list[str] = []
    paths = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0, f"odd indent in the map: {line!r}"
        depth = indent // 2
        assert depth <= len(parents), f"map line indented under nothing: {line!r}"
        name = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        assert "/" not in name.rstrip("/"), f"one name per line, nested by indent: {line!r}"
        del parents[depth:]
        path = "".join(parents) + name
        paths.append(path)
        if name.endswith("/"):
            parents.append(name)
    return paths


def project_files() -> list[str]:
    """Files of the tree: tracked or new, never ignored ones (.venv, var/, node_modules, caches)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        ignored = {".git", "__pycache__"} | {
            line.strip().strip("/") for line in (ROOT / ".gitignore").read_text().splitlines() if line.strip()
        }
        return [
            str(p.relative_to(ROOT)) for p in ROOT.rglob("*")
            if p.is_file() and not ignored & set(p.relative_to(ROOT).parts)
        ]
    return [f for f in out.splitlines() if (ROOT / f).exists()]


def folders_the_map_must_name(files: list[str]) -> set[str]:
    must = {f.split("/", 1)[0] + "/" for f in files if "/" in f}
    must |= {name + "/" for name in ALWAYS_MAPPED}
    for f in files:
        parts = f.split("/")
        # Every folder under log/ and tests/ that holds Python files (at any depth).
        if parts[0] in ("log", "tests") and f.endswith(".py"):
            for depth in range(2, len(parts)):
                must.add("/".join(parts[:depth]) + "/")
    return must


def test_map_parser_reads_nesting() -> None:
    readme = "# T\n\n## Map\n\n```text\na/  x\n  b/  y\n    c.py  z\n  d.py  w\ne.py  v\n```\n\n## Next\n"
    assert map_entries(readme) == ["a/", "a/b/", "a/b/c.py", "a/d.py", "e.py"]


def test_readme_map_names_every_folder_of_the_tree() -> None:
    named = set(map_entries((ROOT / "README.md").read_text()))
    missing = sorted(folders_the_map_must_name(project_files()) - named)
    assert not missing, f"folders missing from the README's map: {missing}"


def test_everything_the_readme_map_names_exists() -> None:
    gone = []
    for path in map_entries((ROOT / "README.md").read_text()):
        target = ROOT / path
        if not (target.is_dir() if path.endswith("/") else target.is_file()):
            gone.append(path)
    assert not gone, f"the README's map names what is not in the tree: {gone}"
