"""The committed front-end assets match what package.json says they should be.

views/static/app.css is a build output that is committed so the Python image needs no Node.
That only works while nobody forgets to rebuild it after touching a template, so the
staleness check rebuilds into a temp file and compares bytes.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "views" / "static"
NODE_MODULES = ROOT / "node_modules"
REBUILD_HINT = "views/static/app.css is stale: run `npm run build:css` and commit the result"


def _npm() -> str:
    npm = shutil.which("npm")
    assert npm is not None, "npm is required to check the CSS build (Node 20+)"
    return npm


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def node_modules() -> Path:
    # A fresh checkout has no node_modules; the lock file makes `npm ci` reproduce the exact tree.
    if not (NODE_MODULES / ".bin" / "tailwindcss").exists():
        done = _run([_npm(), "ci", "--no-audit", "--no-fund"])
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return NODE_MODULES


def _htmx_version(source: str) -> str:
    # htmx.min.js carries its own version as `version:"2.0.x"` in the exported htmx object.
    found = re.findall(r'version:\s*"(\d+\.\d+\.\d+)"', source)
    assert len(set(found)) == 1, f"expected exactly one htmx version string, found {found}"
    return found[0]


def test_committed_css_matches_a_fresh_build(node_modules: Path, tmp_path: Path) -> None:
    committed = STATIC / "app.css"
    before = committed.read_bytes()
    fresh = tmp_path / "app.css"
    # Run the real npm script so its flags cannot drift from this test; the CLI's last
    # --output wins, so the committed file is left alone.
    done = _run([_npm(), "run", "--silent", "build:css", "--", "--output", str(fresh)])
    assert done.returncode == 0, f"build:css failed:\n{done.stdout}\n{done.stderr}"
    assert committed.read_bytes() == before, "build:css wrote the committed file, not the temp one"
    assert fresh.read_bytes() == before, REBUILD_HINT


def test_built_css_carries_the_custom_htmx_rules() -> None:
    css = (STATIC / "app.css").read_text()
    # Without these the app's CSP-friendly htmx config would show every spinner all the time.
    assert ".htmx-indicator{opacity:0}" in css
    assert re.search(r"\.htmx-request[ .]\.?htmx-indicator", css)
    assert ".htmx-swapping" in css
    assert "--color-base-100" in css, "DaisyUI theme variables missing from the build"


def test_htmx_version_parser_reads_the_exported_version() -> None:
    assert _htmx_version('var htmx=function(){return {version:"2.0.11",x:1}}') == "2.0.11"
    with pytest.raises(AssertionError):
        _htmx_version("var htmx=function(){}")


def test_vendored_htmx_is_a_2_0_build() -> None:
    version = _htmx_version((STATIC / "htmx.min.js").read_text())
    assert version.startswith("2.0."), f"views/static/htmx.min.js is htmx {version}, want 2.0.x"


def test_vendored_htmx_matches_the_pinned_package() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["htmx.org"]
    assert re.fullmatch(r"2\.0\.\d+", pinned), f"htmx.org must be pinned exactly to 2.0.x, got {pinned}"
    vendored = _htmx_version((STATIC / "htmx.min.js").read_text())
    assert vendored == pinned, "htmx.min.js differs from package.json: run `npm run vendor:htmx`"


def test_npm_dependencies_are_pinned_exactly() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    deps = package["devDependencies"]
    assert deps["@tailwindcss/cli"].startswith("4.") and deps["daisyui"].startswith("5.")
    for name, spec in deps.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec), f"{name} is not pinned exactly: {spec}"
    lock = json.loads((ROOT / "package-lock.json").read_text())
    for name, spec in deps.items():
        assert lock["packages"][f"node_modules/{name}"]["version"] == spec, f"lock disagrees on {name}"
