"""``keep_freed_memory``: glibc keeps freed blocks for reuse instead of faulting them in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's malloc only"
)

# Three 8 MiB blocks taken and given back 20 times, after one 10 MiB block has set glibc's adaptive
# thresholds (mmap 10 MiB, trim 20 MiB): by default the 24 MiB freed at the heap's top is trimmed every
# time, and every page faults again on the next round.
_WORKLOAD = """
import ctypes, resource, sys
if sys.argv[1] == "keep":
    from hoplon.core.memory import keep_freed_memory
    assert keep_freed_memory() and keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
MB = 1 << 20
first = libc.malloc(10 * MB); libc.memset(first, 1, 10 * MB); libc.free(first)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    blocks = [libc.malloc(8 * MB) for _ in range(3)]
    for block in blocks:
        libc.memset(block, 1, 8 * MB)
    for block in reversed(blocks):
        libc.free(block)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **env: str) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    done = subprocess.run(
        [sys.executable, "-c", _WORKLOAD, mode], env={**clean, **env}, capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1])


def test_freed_blocks_are_reused_without_page_faults() -> None:
    default, kept = _faults("default"), _faults("keep")
    pages = 20 * 3 * (8 << 20) // 4096
    assert default > pages / 2  # glibc trims the heap and the pages fault in again, round after round
    assert kept < pages / 10  # the first round's pages only


def test_the_users_own_malloc_settings_win() -> None:
    code = "from hoplon.core.memory import keep_freed_memory; print(keep_freed_memory())"
    for name, value in (
        ("MALLOC_TRIM_THRESHOLD_", "1048576"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576"),
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | {name: value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("argv", "applied"),
    [
        (["audit", "--help"], True),
        (["-v", "harden", "--help"], True),
        (["ledger", "--help"], False),
        (["keys", "--help"], False),
    ],
)
def test_the_cli_keeps_freed_memory_for_tensor_commands_only(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], applied: bool
) -> None:
    import hoplon.core.memory
    from hoplon.cli.main import main

    calls: list[bool] = []

    def record() -> bool:
        calls.append(True)
        return True

    monkeypatch.setattr(hoplon.core.memory, "keep_freed_memory", record)
    assert main(argv) == 0
    assert bool(calls) == applied
