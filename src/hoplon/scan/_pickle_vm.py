"""A symbolic interpreter over the pickle opcode stream (protocols 0-5).

It never imports, calls or unpickles anything: it walks the opcodes one by one, keeps a symbolic stack
and memo, and records which globals a real unpickler would import (``GLOBAL``, ``STACK_GLOBAL``, ``INST``,
``EXT1/2/4``) and which of them it would call (``REDUCE``, ``INST``, ``OBJ``, ``NEWOBJ(_EX)``), with the
byte offset of each opcode. Every pickle in a stream is walked, including data after a ``STOP``.

The walk fails closed: a truncated or malformed stream, an over-limit stream and a stack or memo
inconsistency end the walk with an :class:`Issue`, and everything seen before that point is kept (a real
unpickler would already have run it).
"""

from __future__ import annotations

import copyreg
import struct
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Final, cast

from hoplon.scan._pickle_stream import (
    CHECK_EVERY,
    MARK,
    MAX_ITEMS_PER_CONTAINER,
    MAX_KEPT,
    MAX_MARKS,
    MAX_MEMO,
    MAX_STACK,
    OPS,
    TORCH_LEGACY_MAGIC,
    Budget,
    CallResult,
    GlobalRef,
    Malformed,
    Opaque,
    Reader,
    SymDict,
    SymList,
    Unknown,
    decode_text,
    fix_import,
    is_importable,
    parse_string_literal,
)

__all__ = ["CallSite", "GlobalSite", "Issue", "PickleWalk", "walk_pickles"]


@dataclass(frozen=True, slots=True)
class GlobalSite:
    """A global the unpickler would import."""

    module: str
    name: str
    offset: int
    opcode: str
    pickle_index: int


@dataclass(frozen=True, slots=True)
class CallSite:
    """A call the unpickler would make. ``target`` is the dotted name, or ``None`` when unresolved."""

    target: str | None
    offset: int
    opcode: str
    pickle_index: int
    detail: str = ""
    bytes_arg: bytes | None = None


@dataclass(frozen=True, slots=True)
class Issue:
    """Something wrong or unusual with the stream itself."""

    kind: str  # malformed | truncated | over-limit | timeout | unresolved-global | ext-registry | build-global
    offset: int
    detail: str
    pickle_index: int


@dataclass(slots=True)
class PickleWalk:
    """Everything the walk saw. ``end`` is where the last pickle's ``STOP`` left the stream."""

    globals: list[GlobalSite] = field(default_factory=list)
    calls: list[CallSite] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    n_pickles: int = 0
    n_opcodes: int = 0
    protocol: int = 0
    end: int = 0
    trailing_bytes: int = 0
    torch_legacy: bool = False
    first_value: object = None
    tensor_elements: int = 0


class _Machine:
    def __init__(self, reader: Reader, walk: PickleWalk, deadline: float, max_opcodes: int, keep_first: bool) -> None:
        self.r = reader
        self.walk = walk
        self.deadline = deadline
        self.max_opcodes = max_opcodes
        self.keep_first = keep_first
        self.stack: list[object] = []
        self.metastack: list[list[object]] = []
        self.memo: dict[int, object] = {}
        self.index = walk.n_pickles

    # -- stack helpers -----------------------------------------------------------------------------------
    def pop(self) -> object:
        if not self.stack:
            raise Malformed("malformed", "stack underflow")
        value = self.stack.pop()
        if value is MARK:
            raise Malformed("malformed", "MARK where a value was expected")
        return value

    def pop_mark(self) -> list[object]:
        if not self.metastack:
            raise Malformed("malformed", "no MARK on the stack")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def top(self) -> object:
        if not self.stack or self.stack[-1] is MARK:
            raise Malformed("malformed", "stack underflow")
        return self.stack[-1]

    def add_global(self, module: str, name: str, offset: int, opcode: str) -> GlobalRef:
        if self.walk.protocol < 3:
            module, name = fix_import(module, name)
        self.walk.globals.append(GlobalSite(module, name, offset, opcode, self.index))
        return GlobalRef(module, name, offset)

    def add_call(self, func: object, args: object, offset: int, opcode: str) -> CallResult:
        bytes_arg = None
        if isinstance(args, tuple) and args and isinstance(args[0], bytes):
            bytes_arg = args[0]
        if isinstance(func, GlobalRef):
            site = CallSite(func.qualname, offset, opcode, self.index, bytes_arg=bytes_arg)
            if func.name in _TENSOR_REBUILDERS and isinstance(args, tuple) and len(args) > 2:
                self.walk.tensor_elements += _numel(args[2])
        elif isinstance(func, CallResult):
            inner = func.func.qualname if isinstance(func.func, GlobalRef) else "an unresolved callable"
            site = CallSite(None, offset, opcode, self.index, f"calls the result of {inner}")
        else:
            site = CallSite(None, offset, opcode, self.index, f"calls a {type(func).__name__} value")
        self.walk.calls.append(site)
        return CallResult(func, args, offset)

    # -- main loop -----------------------------------------------------------------------------------------
    def run(self) -> object:
        r = self.r
        walk = self.walk
        stack = self.stack
        while True:
            offset = r.pos
            walk.n_opcodes += 1
            if walk.n_opcodes % CHECK_EVERY == 0:
                if time.monotonic() > self.deadline:
                    raise Budget("timeout", "time limit reached while walking the opcodes")
                if walk.n_opcodes > self.max_opcodes:
                    raise Budget("over-limit", f"more than {self.max_opcodes} opcodes")
                if len(self.stack) + sum(len(m) for m in self.metastack) > MAX_STACK:
                    raise Budget("over-limit", f"more than {MAX_STACK} values on the stack")
            code = r.read1()
            op = OPS.get(code)
            if op is None:
                raise Malformed("malformed", f"unknown opcode 0x{code:02x} at offset {offset}")
            name, kind = op
            arg: object = None
            if not kind:
                pass  # most opcodes take no argument: skip the argument decoding below
            elif kind == "u1":
                arg = r.read1()
            elif kind == "u2":
                arg = struct.unpack("<H", r.read(2))[0]
            elif kind == "i4":
                arg = struct.unpack("<i", r.read(4))[0]
            elif kind == "u4":
                arg = struct.unpack("<I", r.read(4))[0]
            elif kind == "u8":
                arg = struct.unpack("<Q", r.read(8))[0]
            elif kind == "f8":
                arg = struct.unpack(">d", r.read(8))[0]
            elif kind == "line":
                arg = r.line()
            elif kind == "line2":
                arg = (r.line(), r.line())
            elif kind in ("n1", "n4"):
                n = r.read1() if kind == "n1" else struct.unpack("<i", r.read(4))[0]
                if n < 0:
                    raise Malformed("malformed", "negative LONG4 size")
                if n > 4096:
                    r.skip(n)
                    arg = Opaque(n)
                else:
                    arg = int.from_bytes(r.read(n), "little", signed=True)
            elif kind in ("s1", "s4", "u1b", "u1s", "u8s", "u8b", "u4s", "u4b"):
                if kind in ("s1", "u1b", "u1s"):
                    n = r.read1()
                elif kind in ("u4s", "u4b"):
                    n = struct.unpack("<I", r.read(4))[0]
                elif kind == "s4":
                    n = struct.unpack("<i", r.read(4))[0]
                    if n < 0:
                        raise Malformed("malformed", "negative BINSTRING size")
                else:
                    n = struct.unpack("<Q", r.read(8))[0]
                if n > MAX_KEPT:
                    r.skip(n)
                    arg = Opaque(n)
                else:
                    raw = r.read(n)
                    arg = raw if kind in ("u1b", "u8b", "u4b") else decode_text(raw)
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                if name == "PUT":
                    key = self._int(bytes(arg))  # type: ignore[call-overload]
                elif name == "MEMOIZE":
                    key = len(self.memo)
                else:
                    key = int(arg)  # type: ignore[call-overload]
                value = self.top()
                if len(self.memo) < MAX_MEMO or key in self.memo:
                    self.memo[key] = value
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                key = self._int(bytes(arg)) if name == "GET" else int(arg)  # type: ignore[call-overload]
                if key in self.memo:
                    stack.append(self.memo[key])
                elif len(self.memo) >= MAX_MEMO:
                    stack.append(Unknown("memo entry beyond the kept limit"))
                else:
                    raise Malformed("malformed", f"memo key {key} read before it was written")
            elif name == "MARK":
                if len(self.metastack) >= MAX_MARKS:
                    raise Budget("over-limit", f"more than {MAX_MARKS} nested MARKs")
                self.metastack.append(stack)
                self.stack = stack = []
            elif name == "POP_MARK":
                self.pop_mark()
                stack = self.stack
            elif name in ("BININT", "BININT1", "BININT2", "LONG1", "LONG4", "BINFLOAT") or name in (
                "BINSTRING",
                "SHORT_BINSTRING",
                "BINUNICODE",
                "SHORT_BINUNICODE",
                "BINUNICODE8",
                "BINBYTES",
                "SHORT_BINBYTES",
                "BINBYTES8",
                "BYTEARRAY8",
            ):
                stack.append(arg)
            elif name == "SETITEMS":
                items = self.pop_mark()
                stack = self.stack
                if len(items) % 2:
                    raise Malformed("malformed", "odd number of items for SETITEMS")
                self._setitems(self.top(), items, offset, name)
            elif name in ("APPENDS", "ADDITEMS"):
                items = self.pop_mark()
                stack = self.stack
                self._extend(self.top(), items, offset, name)
            elif name == "EMPTY_DICT":
                stack.append(SymDict())
            elif name == "EMPTY_LIST":
                stack.append(SymList())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = [self.pop() for _ in range(n)][::-1]
                stack.append(tuple(items))
            elif name == "REDUCE":
                args = self.pop()
                func = self.pop()
                stack.append(self.add_call(func, args, offset, name))
            elif name == "BUILD":
                state = self.pop()
                obj = self.top()
                self._build(obj, state, offset)
            elif name == "NEWOBJ":
                args = self.pop()
                cls = self.pop()
                stack.append(self.add_call(cls, args, offset, name))
            elif name == "STACK_GLOBAL":
                gname_v = self.pop()
                module_v = self.pop()
                if isinstance(module_v, str) and isinstance(gname_v, str):
                    if not (is_importable(module_v) and is_importable(gname_v)):
                        raise Malformed("malformed", "STACK_GLOBAL with a name that cannot be imported")
                    stack.append(self.add_global(module_v, gname_v, offset, name))
                else:
                    walk.issues.append(
                        Issue(
                            "unresolved-global",
                            offset,
                            "STACK_GLOBAL whose module or name is not a constant string "
                            f"({type(module_v).__name__}, {type(gname_v).__name__})",
                            self.index,
                        )
                    )
                    stack.append(Unknown("unresolved global"))
            elif name == "GLOBAL":
                raw_module, raw_name = cast(tuple[bytes, bytes], arg)
                module, gname = decode_text(raw_module), decode_text(raw_name)
                if not (is_importable(module) and is_importable(gname)):
                    raise Malformed("malformed", f"GLOBAL with a name that cannot be imported: {module!r}")
                stack.append(self.add_global(module, gname, offset, name))
            elif name in ("NONE",):
                stack.append(None)
            elif name == "NEWTRUE":
                stack.append(True)
            elif name == "NEWFALSE":
                stack.append(False)
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "TUPLE":
                items = self.pop_mark()
                stack = self.stack
                stack.append(tuple(items[:MAX_ITEMS_PER_CONTAINER]))
            elif name == "SETITEM":
                value = self.pop()
                dict_key = self.pop()
                self._setitems(self.top(), [dict_key, value], offset, name)
            elif name == "APPEND":
                value = self.pop()
                self._extend(self.top(), [value], offset, name)
            elif name == "BINPERSID":
                pid = self.pop()
                if isinstance(pid, tuple) and len(pid) > 1 and pid[0] == "module" and isinstance(pid[1], GlobalRef):
                    # legacy torch.save of a whole module: persistent_load returns the class itself
                    stack.append(pid[1])
                else:
                    stack.append(Unknown("persistent id"))
            elif name == "FRAME":
                pass
            elif name == "STOP":
                return self.pop()
            elif name == "PROTO":
                if not isinstance(arg, int) or arg > 5:
                    raise Malformed("malformed", f"unsupported protocol {arg}")
                walk.protocol = max(walk.protocol, arg)
            elif name == "POP":
                if stack and stack[-1] is MARK:
                    stack.pop()
                else:
                    self.pop()
            elif name == "DUP":
                stack.append(self.top())
            elif name == "INT":
                text = bytes(arg)  # type: ignore[call-overload]
                if text == b"00":
                    stack.append(False)
                elif text == b"01":
                    stack.append(True)
                else:
                    stack.append(self._int(text))
            elif name == "LONG":
                text = bytes(arg)  # type: ignore[call-overload]
                stack.append(self._int(text[:-1] if text.endswith(b"L") else text))
            elif name == "FLOAT":
                try:
                    stack.append(float(bytes(arg)))  # type: ignore[call-overload]
                except ValueError:
                    raise Malformed("malformed", "bad FLOAT literal") from None
            elif name == "STRING":
                stack.append(parse_string_literal(bytes(arg)))  # type: ignore[call-overload]
            elif name == "UNICODE":
                try:
                    stack.append(bytes(arg).decode("raw-unicode-escape"))  # type: ignore[call-overload]
                except UnicodeDecodeError:
                    raise Malformed("malformed", "bad UNICODE literal") from None
            elif name == "NEXT_BUFFER":
                stack.append(Unknown("out-of-band buffer"))
            elif name == "READONLY_BUFFER":
                self.top()
            elif name == "EMPTY_SET":
                stack.append(SymList())
            elif name in ("LIST", "FROZENSET"):
                items = self.pop_mark()
                stack = self.stack
                lst = SymList()
                for item in items:
                    lst.add(item)
                stack.append(lst)
            elif name == "DICT":
                items = self.pop_mark()
                stack = self.stack
                if len(items) % 2:
                    raise Malformed("malformed", "odd number of items for DICT")
                dct = SymDict()
                for i in range(0, len(items), 2):
                    dct.add(items[i], items[i + 1])
                stack.append(dct)
            elif name == "INST":
                raw_module, raw_name = cast(tuple[bytes, bytes], arg)
                module, gname = decode_text(raw_module), decode_text(raw_name)
                if not (is_importable(module) and is_importable(gname)):
                    raise Malformed("malformed", "INST with a name that cannot be imported")
                items = self.pop_mark()
                stack = self.stack
                ref = self.add_global(module, gname, offset, name)
                stack.append(self.add_call(ref, tuple(items), offset, name))
            elif name == "OBJ":
                items = self.pop_mark()
                stack = self.stack
                if not items:
                    raise Malformed("malformed", "OBJ without a class")
                stack.append(self.add_call(items[0], tuple(items[1:]), offset, name))
            elif name == "NEWOBJ_EX":
                self.pop()
                args = self.pop()
                cls = self.pop()
                stack.append(self.add_call(cls, args, offset, name))
            elif name in ("EXT1", "EXT2", "EXT4"):
                code = int(arg)  # type: ignore[call-overload]
                target = copyreg._inverted_registry.get(code)  # type: ignore[attr-defined]
                if target is None:
                    walk.issues.append(
                        Issue(
                            "ext-registry",
                            offset,
                            f"{name} {code}: a copyreg extension code not registered at scan time; the "
                            "loading process may map it to any global",
                            self.index,
                        )
                    )
                    stack.append(Unknown("extension code"))
                else:
                    walk.issues.append(
                        Issue("ext-registry", offset, f"{name} {code} resolves to {target[0]}.{target[1]}", self.index)
                    )
                    stack.append(self.add_global(str(target[0]), str(target[1]), offset, name))
            elif name == "PERSID":
                stack.append(Unknown("persistent id"))
            else:  # pragma: no cover - every opcode in OPS is handled above
                raise Malformed("malformed", f"unhandled opcode {name}")

    def _int(self, text: bytes) -> int:
        try:
            return int(text)
        except ValueError:
            raise Malformed("malformed", f"bad integer literal {text[:20]!r}") from None

    def _extend(self, target: object, items: list[object], offset: int, opcode: str) -> None:
        if isinstance(target, SymList):
            for item in items:
                target.add(item)
        elif isinstance(target, GlobalRef):
            self.walk.issues.append(
                Issue("build-global", offset, f"{opcode} on the module-level object {target.qualname}", self.index)
            )

    def _setitems(self, target: object, items: list[object], offset: int, opcode: str) -> None:
        if isinstance(target, SymDict):
            for i in range(0, len(items), 2):
                target.add(items[i], items[i + 1])
        elif isinstance(target, GlobalRef):
            self.walk.issues.append(
                Issue("build-global", offset, f"{opcode} on the module-level object {target.qualname}", self.index)
            )

    def _build(self, obj: object, state: object, offset: int) -> None:
        if isinstance(obj, GlobalRef):
            self.walk.issues.append(
                Issue(
                    "build-global",
                    offset,
                    f"BUILD sets attributes of the module-level object {obj.qualname}",
                    self.index,
                )
            )
            return
        if (
            isinstance(obj, CallResult)
            and isinstance(obj.func, GlobalRef)
            and obj.func.qualname == "joblib.numpy_pickle.NumpyArrayWrapper"
            and isinstance(state, SymDict)
        ):
            self._skip_joblib_array(state, offset)

    def _skip_joblib_array(self, state: SymDict, offset: int) -> None:
        """joblib writes an array's bytes right after the BUILD of its ``NumpyArrayWrapper``."""
        shape = state.get("shape")
        dtype = state.get("dtype")
        itemsize, has_object = _dtype_itemsize(dtype)
        if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise Malformed("malformed", "joblib array wrapper without a readable shape")
        if has_object:
            # an object array is a nested pickle in the same stream: walk it like any other
            nested = _Machine(self.r, self.walk, self.deadline, self.max_opcodes, keep_first=False)
            nested.index = self.index
            nested.run()
            return
        if itemsize is None:
            raise Malformed("malformed", "joblib array wrapper with a dtype that cannot be sized")
        count = 1
        for d in shape:
            count *= d
        if state.get("numpy_array_alignment_bytes") is not None:
            pad = self.r.read(1)[0]
            self.r.skip(pad)
        self.r.skip(count * itemsize)


_KIND_SIZES: Final = {"b": 1, "?": 1}
_TENSOR_REBUILDERS: Final = frozenset({"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"})


def _numel(shape: object) -> int:
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        return 0
    count = 1
    for d in shape:
        count *= d
    return count


def _dtype_itemsize(dtype: object) -> tuple[int | None, bool]:
    """``(itemsize, has_object)`` of a symbolic ``numpy.dtype(...)`` call, from its arguments only."""
    if not (isinstance(dtype, CallResult) and isinstance(dtype.args, tuple) and dtype.args):
        return None, False
    spec = dtype.args[0]
    if not isinstance(spec, str) or not spec:
        return None, False
    spec = spec.lstrip("<>=|")
    if not spec:
        return None, False
    kind, digits = spec[0], spec[1:]
    if kind == "O":
        return 8, True
    if kind in _KIND_SIZES and not digits:
        return _KIND_SIZES[kind], False
    if digits.isdigit():
        size = int(digits)
        if kind == "U":
            size *= 4
        return size, False
    return None, False


def walk_pickles(
    stream: BinaryIO,
    size: int,
    *,
    deadline: float,
    max_opcodes: int = 50_000_000,
    max_pickles: int = 64,
) -> PickleWalk:
    """Walk every pickle from the stream's current position to ``size``; never raises for bad input."""
    walk = PickleWalk()
    reader = Reader(stream, size)
    start = reader.pos
    expected_pickles = max_pickles
    while reader.pos < size and walk.n_pickles < expected_pickles:
        begin = reader.pos
        globals_before = len(walk.globals)
        calls_before = len(walk.calls)
        machine = _Machine(reader, walk, deadline, max_opcodes, keep_first=walk.n_pickles == 0)
        try:
            value = machine.run()
        except Malformed as exc:
            if walk.n_pickles > 0 and len(walk.globals) == globals_before and len(walk.calls) == calls_before:
                # data after a STOP that does not parse as a pickle and imports nothing
                walk.trailing_bytes = size - begin
                break
            walk.issues.append(Issue(exc.kind, reader.pos, exc.detail, walk.n_pickles))
            walk.n_pickles += 1
            break
        except Budget as exc:
            walk.issues.append(Issue(exc.kind, reader.pos, exc.detail, walk.n_pickles))
            walk.n_pickles += 1
            break
        if walk.n_pickles == 0:
            walk.first_value = value if isinstance(value, int | str) else None
            if value == TORCH_LEGACY_MAGIC:
                # legacy torch.save: magic, protocol, sys info, the object, storage keys, then raw storages
                walk.torch_legacy = True
                expected_pickles = 5
        walk.n_pickles += 1
        walk.end = reader.pos
    if walk.torch_legacy and walk.n_pickles == 5:
        walk.trailing_bytes = 0
    elif walk.n_pickles and reader.pos < size and not walk.trailing_bytes and walk.n_pickles >= expected_pickles:
        walk.issues.append(
            Issue("over-limit", reader.pos, f"more than {max_pickles} pickles in one stream", walk.n_pickles)
        )
    del start
    return walk
