"""The walk-throughs in docs/ run as written: each ```sh session block is executed by bash
from the repository's root (its work directory moved into the test's temporary one)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def session(doc: str) -> str:
    text = (REPO / doc).read_text()
    blocks = re.findall(r"^## The session\n.*?^```sh\n(.*?)^```", text, flags=re.S | re.M)
    assert len(blocks) == 1, f"{doc} has no '## The session' with one sh block"
    return blocks[0]


def test_a_dock_by_hand_with_a_simulated_camera(tmp_path):
    """docs/dock.md: keys, dock.toml, enrolment, officers, bodycam-dock run, the cable, a
    shift docked twice, then list and export — every command as the page prints it."""
    script = session("docs/dock.md")
    assert script.startswith("W=run/hand")
    work = tmp_path / "hand"
    script = script.replace("W=run/hand", f"W={work}", 1)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV",)}
    env["PATH"] = "/usr/bin:/bin"                      # the venv is not on the PATH: the page says .venv/bin/
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "h264" in proc.stdout                        # ffprobe opened the export
    assert "KOD-1" in proc.stdout                       # the list names the officer the dock assigned
    assert not list((work / "cam-1" / "store").glob("*.manifest"))   # emptied, after the receipts
    assert len(list((work / "evidence" / "devices" / "cam-1" / "segments").glob("*.manifest"))) >= 2
    assert "plugged: cam-1" in (work / "cable.log").read_text()
