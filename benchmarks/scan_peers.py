"""hoplon scan against picklescan, modelscan and fickling on one corpus, side by side.

The corpus is the scanner test suite's malicious files (one per published bypass technique and one per
callable a bypass names, built from opcodes: ``tests/scan/corpus.py``) plus a benign corpus of real files
written by torch, scikit-learn/joblib, numpy, safetensors, ONNX and h5py. Each tool runs once, in its own
process, over the whole corpus; wall time includes interpreter start-up and the tool's imports. hoplon runs
through its CLI (``hoplon scan --format json``); the peers through their Python APIs in the benchmark's own
environment (``benchmarks/.venv-scan``, see ``benchmarks/scan_README.md``).

Every tool runs from compiled bytecode, as after a normal install: pip compiles the peers' modules when it
installs them, but hoplon is an editable install from ``src/``, whose ``__pycache__`` is only written on
import, and not at all under ``PYTHONDONTWRITEBYTECODE=1``; so the script byte-compiles ``src/hoplon`` first
(``compileall``), or hoplon would pay for compiling its own sources on every run.

It also measures the extra peak memory (RSS) and time of scanning a generated 2 GB safetensors file and a
2 GB PyTorch checkpoint (written to ``/tmp``, sparse where the format allows).

Run: ``.venv/bin/python benchmarks/scan_peers.py [--peers-python benchmarks/.venv-scan/bin/python]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEER_DRIVER = r"""
import json, sys, zipfile, warnings, logging, io, contextlib
warnings.filterwarnings("ignore")
logging.disable(logging.CRITICAL)
tool, paths = sys.argv[1], sys.argv[2:]
out = {}
if tool == "picklescan":
    from picklescan.scanner import scan_file_path
    def judge(p):
        r = scan_file_path(p)
        if r.issues_count or r.infected_files:
            return "flagged"
        return "error" if r.scan_err else "clean"
elif tool == "modelscan":
    from modelscan.modelscan import ModelScan
    def judge(p):
        ms = ModelScan()
        with contextlib.redirect_stdout(io.StringIO()):
            r = ms.scan(p)
        if r.get("issues"):
            return "flagged"
        return "error" if r.get("errors") else "clean"
elif tool == "fickling":
    import fickling
    def judge(p):
        if zipfile.is_zipfile(p):
            res = fickling.scan_zip_archive(p, graceful=True)
            if any(not r.is_safe for r in res.values()):
                return "flagged"
            return "error" if any(r.errors for r in res.values()) else "clean"
        r = fickling.scan_file(p, graceful=True)
        if not r.is_safe and not r.errors:
            return "flagged"
        if r.errors:
            return "flagged" if not r.is_safe and r.severity.name not in ("SUSPICIOUS",) else "error"
        return "clean"
for p in paths:
    try:
        out[p] = judge(p)
    except BaseException as exc:  # a peer crashing on a file is a result, not a benchmark failure
        out[p] = "error"
print(json.dumps(out))
"""


def build_corpus(root: Path) -> tuple[list[Path], list[Path]]:
    from tests.scan.corpus import write_benign, write_malicious

    if root.exists():
        shutil.rmtree(root)
    mal = write_malicious(root / "malicious")
    ben = write_benign(root / "benign")
    return sorted(mal.iterdir()), sorted(p for p in ben.iterdir() if p.is_file())


def hoplon_command() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "hoplon"
    probe = subprocess.run([str(exe), "scan", "--help"], capture_output=True, check=False) if exe.exists() else None
    if probe is not None and probe.returncode == 0:
        return [str(exe), "scan"]
    return [str(ROOT / ".venv" / "bin" / "python"), "-m", "hoplon.cli.scanning"]


CPU_S: dict[str, float] = {}


def timed(cmd: list[str], repeat: int, label: str = "") -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``cmd`` ``repeat`` times; return the last result and the best wall time (the machine is shared).

    The best CPU time (user + system) of the child is kept in ``CPU_S[label]``: it is less sensitive than wall
    time to other work on the machine.
    """
    best = best_cpu = float("inf")
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        best = min(best, time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best_cpu = min(best_cpu, cpu)
    if label:
        CPU_S[label] = best_cpu
    return proc, best


def run_hoplon(corpus: Path, files: list[Path], repeat: int) -> tuple[dict[str, str], float, str]:
    cmd = [*hoplon_command(), str(corpus), "--format", "json"]
    proc, wall = timed(cmd, repeat, "hoplon")
    records = json.loads(proc.stdout)
    verdict: dict[str, str] = {str(p): "clean" for p in files}
    for r in records:
        top = r["path"].split("!")[0]
        if r["verdict"] == "error":
            verdict[top] = "error" if verdict.get(top) == "clean" else verdict[top]
        elif r["verdict"] != "clean":
            verdict[top] = "flagged"
    return verdict, wall, " ".join(cmd[:3])


def run_peer(python: str, tool: str, files: list[Path], repeat: int) -> tuple[dict[str, str], float]:
    proc, wall = timed([python, "-c", PEER_DRIVER, tool, *map(str, files)], repeat, tool)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"{tool} driver failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def startup(cmd: list[str]) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        best = min(best, time.perf_counter() - start)
    return best


def summarise(verdicts: dict[str, str], malicious: list[Path], benign: list[Path]) -> dict[str, object]:
    mal = [verdicts.get(str(p), "error") for p in malicious]
    ben = [verdicts.get(str(p), "error") for p in benign]
    return {
        "detected": sum(v == "flagged" for v in mal),
        "malicious": len(mal),
        "detection_rate": sum(v == "flagged" for v in mal) / len(mal),
        "errors_on_malicious": sum(v == "error" for v in mal),
        "false_positives": sum(v == "flagged" for v in ben),
        "benign": len(ben),
        "false_positive_rate": sum(v == "flagged" for v in ben) / len(ben),
        "errors_on_benign": sum(v == "error" for v in ben),
        "missed": [p.name for p, v in zip(malicious, mal, strict=True) if v != "flagged"],
        "flagged_benign": [p.name for p, v in zip(benign, ben, strict=True) if v == "flagged"],
        "errored_benign": [p.name for p, v in zip(benign, ben, strict=True) if v == "error"],
    }


# --- the 2 GB memory check ----------------------------------------------------------------------------------

_MEM_PROBE = r"""
import resource, sys, time
from hoplon.scan import scan_file
start = time.perf_counter()
records = scan_file(sys.argv[1])
took = time.perf_counter() - start
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, took, records[0].format, max(r.verdict for r in records))
"""


def big_safetensors(path: Path, size: int) -> None:
    n = (size // 4) & ~0xF
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + 4 * n)  # sparse: no 2 GB written


def big_torch(path: Path, size: int) -> None:
    from tests.scan import builders as b

    n = size // 4
    pickle = (
        b.PROTO2
        + b.glob("collections", "OrderedDict")
        + b.EMPTY_TUPLE
        + b.REDUCE
        + b.ustr("w")
        + b.glob("torch._utils", "_rebuild_tensor_v2")
        + b.MARK
        + b.MARK
        + b.ustr("storage")
        + b.glob("torch", "FloatStorage")
        + b.ustr("0")
        + b.ustr("cpu")
        + b"J"
        + struct.pack("<i", n)
        + b.TUPLE
        + b"Q"
        + b"K\x00"
        + b"J"
        + struct.pack("<i", n)
        + b.TUPLE1
        + b"K\x01"
        + b.TUPLE1
        + b"\x89"
        + b.glob("collections", "OrderedDict")
        + b.EMPTY_TUPLE
        + b.REDUCE
        + b.TUPLE
        + b.REDUCE
        + b"s"
        + b.STOP
    )
    block = b"\x00" * (16 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("archive/data.pkl", pickle)
        z.writestr("archive/byteorder", "little")
        with z.open("archive/data/0", "w", force_zip64=True) as member:
            left = 4 * n
            while left:
                chunk = block[: min(len(block), left)]
                member.write(chunk)
                left -= len(chunk)
        z.writestr("archive/version", "3\n")


def memory_check(size: int) -> dict[str, object]:
    python = str(ROOT / ".venv" / "bin" / "python")
    tmp = Path(tempfile.mkdtemp(prefix="hoplon-scan-big-", dir="/tmp"))
    try:
        tiny = tmp / "tiny.safetensors"
        big_safetensors(tiny, 64)
        out: dict[str, object] = {}
        base = subprocess.run([python, "-c", _MEM_PROBE, str(tiny)], capture_output=True, text=True, check=True)
        base_kb = int(base.stdout.split()[0])
        for name, make in (("safetensors", big_safetensors), ("pytorch", big_torch)):
            path = tmp / f"big.{name}"
            make(path, size)
            proc = subprocess.run([python, "-c", _MEM_PROBE, str(path)], capture_output=True, text=True, check=True)
            kb, took, fmt, verdict = proc.stdout.split()
            out[name] = {
                "file_bytes": path.stat().st_size,
                "extra_rss_mb": round((int(kb) - base_kb) / 1024, 1),
                "scan_s": round(float(took), 3),
                "format": fmt,
                "verdict": verdict,
            }
            path.unlink()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers-python", default=str(ROOT / "benchmarks" / ".venv-scan" / "bin" / "python"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scan_peers.json"))
    parser.add_argument("--big-gb", type=float, default=2.0, help="size of the memory-check files; 0 skips it")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool; the best wall time is kept")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import compileall

    compileall.compile_dir(str(ROOT / "src" / "hoplon"), quiet=1)  # as pip does for the peers (see above)

    corpus = Path(tempfile.gettempdir()) / "hoplon-scan-corpus"
    malicious, benign = build_corpus(corpus)
    files = malicious + benign
    results: dict[str, object] = {"corpus": {"malicious": len(malicious), "benign": len(benign)}, "tools": {}}
    tools: dict[str, dict[str, object]] = {}

    verdicts, wall, cmd = run_hoplon(corpus, files, args.repeat)
    tools["hoplon"] = {**summarise(verdicts, malicious, benign), "wall_s": round(wall, 3), "command": cmd}
    tools["hoplon"]["startup_s"] = round(startup([*hoplon_command(), "--help"]), 3)
    # the scanner alone, without the CLI (typer, rich and every command module of `hoplon`)
    lib = [
        str(ROOT / ".venv" / "bin" / "python"),
        "-c",
        f"from hoplon.scan import scan_paths; scan_paths([{str(corpus)!r}])",
    ]
    _proc, lib_wall = timed(lib, args.repeat, "hoplon-lib")
    tools["hoplon-lib"] = {**tools["hoplon"], "wall_s": round(lib_wall, 3), "command": "python -c scan_paths(...)"}
    tools["hoplon-lib"]["startup_s"] = round(startup([lib[0], "-c", "import hoplon.scan"]), 3)
    peers_python = args.peers_python
    if Path(peers_python).exists():
        for tool in ("picklescan", "modelscan", "fickling"):
            verdicts, wall = run_peer(peers_python, tool, files, args.repeat)
            tools[tool] = {**summarise(verdicts, malicious, benign), "wall_s": round(wall, 3)}
            import_line = {"picklescan": "picklescan.scanner", "modelscan": "modelscan.modelscan"}.get(tool, tool)
            tools[tool]["startup_s"] = round(startup([peers_python, "-c", f"import {import_line}"]), 3)
    else:
        print(f"peers' environment {peers_python} not found; see benchmarks/scan_README.md", file=sys.stderr)
    for name, t in tools.items():
        t["cpu_s"] = round(CPU_S.get(name, float("nan")), 3)
    results["tools"] = tools
    if args.big_gb > 0:
        results["memory"] = memory_check(int(args.big_gb * (1 << 30)))

    print(f"corpus: {len(malicious)} malicious, {len(benign)} benign files\n")
    header = f"{'tool':11} {'detected':>10} {'det.rate':>8} {'FP':>6} {'FP rate':>8} {'err(ben)':>8} {'err(mal)':>8}"
    print(header + f" {'wall s':>7} {'cpu s':>6} {'start s':>7}")
    for name, t in tools.items():
        print(
            f"{name:11} {t['detected']:>4}/{t['malicious']:<5} {t['detection_rate']:>8.1%} "
            f"{t['false_positives']:>2}/{t['benign']:<3} {t['false_positive_rate']:>8.1%} "
            f"{t['errors_on_benign']:>8} {t['errors_on_malicious']:>8} {t['wall_s']:>7.2f} {t['cpu_s']:>6.2f} "
            f"{t['startup_s']:>7.2f}"
        )
    if "memory" in results:
        print("\n2 GB files (hoplon):", json.dumps(results["memory"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
