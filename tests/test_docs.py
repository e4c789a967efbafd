"""Documentation is part of the product: every setting the code reads is in the README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def settings_read_by_code() -> set[str]:
    # The app's own settings, and the tracing package's options it builds its config from.
    source = (ROOT / "settings.py").read_text() + (ROOT / "log" / "config.py").read_text()
    return set(re.findall(r'get\("([A-Z][A-Z0-9_]+)"', source))


def test_every_setting_is_documented() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", readme, flags=re.M))
    names = settings_read_by_code()
    assert len(names) > 10
    missing = names - documented
    assert not missing, f"settings missing from README's configuration table: {sorted(missing)}"


def test_readme_quick_start_has_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^    (\./\S+)$", quick_start, flags=re.M)
    assert commands == ["./run.sh", "./test.sh"]
    assert "./test.sh" in (ROOT / ".ci" / "run").read_text()
