"""bench/peers_instructions.py runs end to end (tiny run): each layer counted under callgrind, the
logging layer wrote a row for every request it answered, and it runs more code than the hello world
it wraps (the numbers themselves are not checked here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.app import ROOT


def test_peers_instructions_smoke() -> None:
    env = {k: v for k, v in os.environ.items() if k != "K_SERVICE"}
    cmd = [sys.executable, "-m", "bench.peers_instructions", "--requests", "30", "--only", "hello,log csv"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    layers = summary["layers"]
    assert list(layers) == ["hello", "log csv"]
    hello, log = layers["hello"]["this"], layers["log csv"]["this"]
    assert hello["written"] == {}
    # 200 warm-up requests and the 30 counted ones, each one CSV row: none dropped, none sampled.
    assert log["written"]["csv rows"] >= 230, log
    assert all(n > 0 for n in hello["counted"].values()), hello
    assert log["instr_per_request"] > hello["instr_per_request"] > 0, (hello, log)
    assert "| log csv |" in done.stdout
