"""The symbolic pickle interpreter: every protocol, offsets, memo, multiple pickles, limits."""

from __future__ import annotations

import io
import os
import pickle
import pickletools
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoplon.scan._pickle_vm import walk_pickles
from tests.scan import builders as b
from tests.scan.conftest import ScanBytes


class _Payload:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("id",))


def _walk(data: bytes, **kwargs: object):  # type: ignore[no-untyped-def]
    return walk_pickles(io.BytesIO(data), len(data), deadline=time.monotonic() + 10, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("protocol", range(6))
def test_every_protocol_resolves_the_reduce_target_and_offsets(protocol: int) -> None:
    data = pickle.dumps({"x": [1, 2, _Payload()]}, protocol=protocol)
    walk = _walk(data)
    expected = {op.name: pos for op, _arg, pos in pickletools.genops(data) if op.name in ("GLOBAL", "STACK_GLOBAL")}
    reduce_at = [pos for op, _arg, pos in pickletools.genops(data) if op.name == "REDUCE"]
    assert [(g.module, g.name) for g in walk.globals] == [(os.system.__module__, "system")]
    assert walk.globals[0].offset == next(iter(expected.values()))
    assert [c.offset for c in walk.calls] == reduce_at
    assert walk.issues == []


def test_inst_obj_and_newobj_are_calls() -> None:
    inst = b"(S'id'\nios\nsystem\n."
    assert [c.target for c in _walk(inst).calls] == ["os.system"]
    obj = b.PROTO2 + b"(" + b.glob("os", "system") + b.ustr("id") + b"o."
    assert [c.target for c in _walk(obj).calls] == ["os.system"]
    newobj = b.PROTO2 + b.glob("subprocess", "Popen") + b.ustr("id") + b.TUPLE1 + b"\x81."
    assert [c.target for c in _walk(newobj).calls] == ["subprocess.Popen"]
    newobj_ex = b.PROTO4 + b.stack_global("subprocess", "Popen") + b.ustr("id") + b.TUPLE1 + b"}" + b"\x92."
    assert [c.target for c in _walk(newobj_ex).calls] == ["subprocess.Popen"]


def test_build_on_a_module_level_object_is_reported() -> None:
    data = b.PROTO2 + b.glob("torch", "nn") + b"}" + b.ustr("a") + b"K\x01s" + b"b."
    walk = _walk(data)
    assert [i.kind for i in walk.issues] == ["build-global"]


def test_unresolvable_stack_global_fails_closed() -> None:
    data = b.PROTO4 + b.glob("builtins", "str") + b.ustr("o") + b.TUPLE1 + b.REDUCE + b.ustr("system") + b"\x93."
    walk = _walk(data)
    assert any(i.kind == "unresolved-global" for i in walk.issues)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x80\x02}", "truncated"),
        (b"\x80\x02R.", "malformed"),
        (b"\x80\x02h\x05.", "malformed"),
        (b"\x80\x09.", "malformed"),
        (b"\x80\x02\xff", "malformed"),
        (b"\x80\x02X\xff\xff\xff\x7f", "truncated"),
        (b"\x80\x021.", "malformed"),
    ],
)
def test_malformed_streams_end_in_an_issue_not_an_exception(data: bytes, kind: str) -> None:
    walk = _walk(data)
    assert [i.kind for i in walk.issues] == [kind]


def test_opcode_limit_is_a_finding() -> None:
    data = b.PROTO2 + b"]" + b"(" + b"K\x01" * 10_000 + b"e."
    walk = _walk(data, max_opcodes=5000)
    assert [i.kind for i in walk.issues] == ["over-limit"]


def test_deadline_is_a_finding() -> None:
    data = b.PROTO2 + b"]" + b"(" + b"K\x01" * 10_000 + b"e."
    walk = walk_pickles(io.BytesIO(data), len(data), deadline=time.monotonic() - 1)
    assert [i.kind for i in walk.issues] == ["timeout"]


def test_large_bytes_are_skipped_not_held() -> None:
    big = b"\x00" * (3 << 20)
    data = b.PROTO4 + b"\x8e" + len(big).to_bytes(8, "little") + big + b"."
    walk = _walk(data)
    assert walk.issues == [] and walk.n_pickles == 1


def test_trailing_non_pickle_data_is_info(scan_bytes: ScanBytes) -> None:
    records = scan_bytes(b.benign() + b"\xff\xfe\xfd" * 10)
    assert records[0].verdict == "clean"
    assert [f.id for f in records[0].findings] == ["scan.pickle.trailing-data"]


def test_legacy_torch_storages_after_the_pickles_are_not_walked(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    path = tmp_path / "legacy.pt"
    torch.save({"w": torch.full((64,), 128.0)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    walk = _walk(data)
    assert walk.torch_legacy and walk.n_pickles == 5 and walk.issues == []
    assert walk.tensor_elements == 64


def test_joblib_inline_arrays_are_skipped(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import joblib
    import numpy as np

    path = tmp_path / "arrays.joblib"
    joblib.dump({"a": np.full(1000, 0x63, dtype=np.uint8), "o": np.array([1, "s"], dtype=object)}, path)
    walk = _walk(path.read_bytes())
    assert walk.issues == [] and walk.trailing_bytes == 0
    assert "joblib.numpy_pickle.NumpyArrayWrapper" in {f"{g.module}.{g.name}" for g in walk.globals}


def test_nested_marks_are_bounded() -> None:
    walk = _walk(b.PROTO2 + b"(" * 200_000 + b".")
    assert [i.kind for i in walk.issues] == ["over-limit"]


def test_poisoning_a_module_level_dict_then_ext_is_critical(scan_bytes: ScanBytes) -> None:
    # SETITEMS into copyreg's inverted registry, then EXT1 of the planted code: resolves to os.system at load
    data = (
        b.PROTO2 + b.glob("copyreg", "_inverted_registry") + b"(" + b"K\x2a" + b.ustr("os") + b.ustr("system")
        + b"\x86" + b"u" + b"0" + b"\x82\x2a" + b"(" + b.ustr("id") + b"tR."
    )  # fmt: skip
    records = scan_bytes(data)
    ids = {f.id for f in records[0].findings}
    assert {"scan.pickle.build-global", "scan.pickle.ext-registry"} <= ids
    assert records[0].verdict == "unsafe"


_SAFE_OPS = [
    b"N", b"\x88", b"\x89", b"K\x01", b"J\x01\x00\x00\x00", b"]", b"}", b")", b"(", b"t", b"l", b"d", b"a", b"e",
    b"s", b"u", b"0", b"1", b"2", b"\x85", b"\x86", b"\x87", b"q\x00", b"h\x00", b"\x94", b"\x8c\x01a", b"b", b"R",
    b"\x93", b"\x81", b"\x8f", b"\x90", b"\x91", b"Q", b"\x82\x01", b".",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(st.sampled_from(_SAFE_OPS), max_size=60))
def test_random_opcode_sequences_never_raise(ops: list[bytes]) -> None:
    data = b.PROTO4 + b"".join(ops)
    walk = _walk(data)
    assert walk.n_opcodes >= 1
