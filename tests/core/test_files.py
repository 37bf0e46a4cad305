"""``create_once``: keys and secrets created by racing workers are whole, private and the same for all."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from hoplon.core.files import create_once


def _create(args: tuple[str, bytes]) -> bytes:
    path, data = args
    return create_once(Path(path), data)


def test_racing_processes_all_get_the_winners_content(tmp_path: Path) -> None:
    target = tmp_path / "state" / "audit-hmac.key"
    with ProcessPoolExecutor(max_workers=4) as pool:
        seen = list(pool.map(_create, [(str(target), os.urandom(64)) for _ in range(16)]))
    assert len(set(seen)) == 1 and seen[0] == target.read_bytes() and len(seen[0]) == 64
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["audit-hmac.key"]  # no temporary file left behind


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "ledger.key"
    assert create_once(target, b"first") == b"first"
    assert create_once(target, b"second") == b"first"
