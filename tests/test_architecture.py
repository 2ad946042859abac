"""The import rules of the design: device/ and dock/ share only common/; the dock writes
into evidence/ (the store), which imports only common/; nothing shipped imports
simulator/; common/ imports none of them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "common": {"device", "dock", "evidence", "simulator"},
    "device": {"dock", "evidence", "simulator"},
    "dock": {"device", "simulator"},
    "evidence": {"device", "dock", "simulator"},  # the office's tool runs without a dock
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_rules(package):
    offenders = {str(p.relative_to(ROOT)): sorted(imported_packages(p) & FORBIDDEN[package])
                 for p in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
