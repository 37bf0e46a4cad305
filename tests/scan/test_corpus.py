"""The benchmark's malicious corpus (the test suite's files) is caught in full."""

from __future__ import annotations

from pathlib import Path

from hoplon.scan import scan_paths
from tests.scan.corpus import write_malicious


def test_every_malicious_file_is_flagged(tmp_path: Path) -> None:
    root = write_malicious(tmp_path / "malicious")
    records = scan_paths([root])
    flagged = {r.path.split("!")[0] for r in records if r.verdict != "clean"}
    missed = sorted(p.name for p in root.iterdir() if str(p) not in flagged)
    assert missed == []
