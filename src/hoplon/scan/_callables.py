"""Which globals a pickle may import: an allowlist with reasons, a denylist, and everything else unknown.

A global is matched on its full dotted path (``module.name``, where ``name`` may itself be dotted: protocol 4
unpicklers follow attribute paths). Allowed entries match exactly or through a narrow rule (e.g. a class of
``torch.nn.modules``); dangerous entries match the name or any parent path, and any path that reaches a
dangerous module through attributes of another (``torch.serialization.os.system``) is dangerous too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from hoplon.scan.bypasses import advisory_for

__all__ = ["Classification", "classify"]

Category = Literal["allowed", "dangerous", "unknown"]


@dataclass(frozen=True, slots=True)
class Classification:
    category: Category
    reason: str
    advisory: str | None = None


_TORCH_REBUILD = "rebuilds a tensor from its storage; reads data, runs no user code"
_NUMPY_REBUILD = "rebuilds a NumPy array or scalar from raw bytes"

ALLOWED: Final[dict[str, str]] = {
    # builtins and containers
    "builtins.set": "builds a set",
    "builtins.frozenset": "builds a frozenset",
    "builtins.dict": "builds a dict",
    "builtins.list": "builds a list",
    "builtins.tuple": "builds a tuple",
    "builtins.int": "builds an int",
    "builtins.float": "builds a float",
    "builtins.complex": "builds a complex number",
    "builtins.bool": "builds a bool",
    "builtins.str": "builds a str",
    "builtins.bytes": "builds bytes",
    "builtins.bytearray": "builds a bytearray",
    "builtins.slice": "builds a slice",
    "builtins.range": "builds a range",
    "builtins.object": "base class passed to copyreg._reconstructor",
    "builtins.NoneType": "the type of None",
    "builtins.Ellipsis": "the Ellipsis constant",
    "copyreg._reconstructor": "default protocol 0-1 object reconstruction: object.__new__ plus state",
    "copyreg.__newobj__": "calls cls.__new__(cls); the class itself is checked separately",
    "copy_reg._reconstructor": "Python 2 name of copyreg._reconstructor",
    "_codecs.encode": "protocol 2 encoding of bytes as latin-1 text (torch, numpy)",
    "collections.OrderedDict": "builds an ordered dict (state dicts)",
    "collections.defaultdict": "builds a defaultdict; its factory is a separate, checked global",
    "collections.Counter": "builds a counter",
    "collections.deque": "builds a deque",
    "datetime.datetime": "builds a datetime",
    "datetime.date": "builds a date",
    "datetime.time": "builds a time",
    "datetime.timedelta": "builds a timedelta",
    "datetime.timezone": "builds a timezone",
    "decimal.Decimal": "builds a decimal",
    "fractions.Fraction": "builds a fraction",
    "uuid.UUID": "builds a UUID",
    "argparse.Namespace": "builds an attribute bag (old training checkpoints keep their arguments)",
    "pathlib.PosixPath": "builds a path object; touches no file",
    "pathlib.WindowsPath": "builds a path object; touches no file",
    "pathlib.PurePosixPath": "builds a path object; touches no file",
    "types.SimpleNamespace": "builds an attribute bag",
    # torch
    "torch._utils._rebuild_tensor": _TORCH_REBUILD,
    "torch._utils._rebuild_tensor_v2": _TORCH_REBUILD,
    "torch._utils._rebuild_tensor_v3": _TORCH_REBUILD,
    "torch._utils._rebuild_parameter": "wraps a rebuilt tensor as an nn.Parameter",
    "torch._utils._rebuild_parameter_with_state": "wraps a rebuilt tensor as an nn.Parameter",
    "torch._utils._rebuild_sparse_tensor": _TORCH_REBUILD,
    "torch._utils._rebuild_nested_tensor": _TORCH_REBUILD,
    "torch._utils._rebuild_qtensor": _TORCH_REBUILD,
    "torch._utils._rebuild_meta_tensor_no_storage": _TORCH_REBUILD,
    "torch._utils._rebuild_wrapper_subclass": _TORCH_REBUILD,
    "torch._utils._rebuild_device_tensor_from_numpy": _TORCH_REBUILD,
    "torch._utils._rebuild_xla_tensor": _TORCH_REBUILD,
    "torch._tensor._rebuild_from_type": "restores a tensor subclass around a rebuilt tensor",
    "torch._tensor._rebuild_from_type_v2": "restores a tensor subclass around a rebuilt tensor",
    "torch.jit._pickle.build_intlist": "TorchScript helper that builds a list of ints",
    "torch.jit._pickle.build_doublelist": "TorchScript helper that builds a list of floats",
    "torch.jit._pickle.build_boollist": "TorchScript helper that builds a list of bools",
    "torch.jit._pickle.build_tensorlist": "TorchScript helper that builds a list of tensors",
    "torch.jit._pickle.build_complexlist": "TorchScript helper that builds a list of complex numbers",
    "torch.jit._pickle.build_tensor_from_id": "TorchScript helper that looks up a tensor by id",
    "torch.jit._pickle.restore_type_tag": "TorchScript helper that tags a container with its type",
    "torch.nn.parameter.Parameter": "the Parameter tensor class",
    "torch.nn.parameter.Buffer": "the Buffer tensor class",
    "torch.nn.parameter.UninitializedParameter": "the Parameter tensor class",
    "torch.Tensor": "the tensor class",
    "torch.Size": "a tensor shape (a tuple)",
    "torch.device": "a device name",
    "torch.serialization._get_layout": "looks up a tensor layout by name",
    "torch.storage.UntypedStorage": "raw tensor storage",
    "torch.storage.TypedStorage": "typed tensor storage",
    # numpy
    "numpy.core.multiarray._reconstruct": _NUMPY_REBUILD,
    "numpy._core.multiarray._reconstruct": _NUMPY_REBUILD,
    "numpy.core.multiarray.scalar": _NUMPY_REBUILD,
    "numpy._core.multiarray.scalar": _NUMPY_REBUILD,
    "numpy.core.numeric._frombuffer": _NUMPY_REBUILD,
    "numpy._core.numeric._frombuffer": _NUMPY_REBUILD,
    "numpy.ndarray": "the array class",
    "numpy.dtype": "a dtype description",
    "numpy.ma.core._mareconstruct": "rebuilds a masked array",
    "numpy.random._pickle.__randomstate_ctor": "recreates a RandomState from its saved state",
    "numpy.random._pickle.__generator_ctor": "recreates a Generator from its saved state",
    "numpy.random._pickle.__bit_generator_ctor": "recreates a bit generator from its saved state",
    "numpy.random.mtrand.RandomState": "a random-number generator state",
    "numpy.random._mt19937.MT19937": "a bit generator",
    "numpy.random._pcg64.PCG64": "a bit generator",
    "numpy.random.bit_generator.SeedSequence": "a seed sequence",
    # joblib
    "joblib.numpy_pickle.NumpyArrayWrapper": "joblib's inline array record; the array bytes follow it",
    "joblib.numpy_pickle.NDArrayWrapper": "joblib's legacy array record (array kept in a side file)",
    # scipy
    "scipy.sparse._csr.csr_matrix": "a sparse matrix",
    "scipy.sparse._csc.csc_matrix": "a sparse matrix",
    "scipy.sparse._coo.coo_matrix": "a sparse matrix",
    "scipy.sparse._csr.csr_array": "a sparse array",
    "scipy.sparse._csc.csc_array": "a sparse array",
    "scipy.sparse.csr.csr_matrix": "a sparse matrix",
}

_TORCH_DTYPES: Final = frozenset(
    [
        "float",
        "float32",
        "float64",
        "double",
        "float16",
        "half",
        "bfloat16",
        "uint8",
        "int8",
        "int16",
        "short",
        "int32",
        "int",
        "int64",
        "long",
        "bool",
        "complex32",
        "complex64",
        "complex128",
        "cfloat",
        "cdouble",
        "qint8",
        "quint8",
        "qint32",
        "quint4x2",
        "quint2x4",
        "float8_e4m3fn",
        "float8_e5m2",
        "float8_e4m3fnuz",
        "float8_e5m2fnuz",
        "uint16",
        "uint32",
        "uint64",
        "strided",
        "sparse_coo",
        "sparse_csr",
        "sparse_csc",
        "sparse_bsr",
        "sparse_bsc",
        "_mkldnn",
        "per_tensor_affine",
        "per_channel_affine",
        "per_tensor_symmetric",
        "per_channel_symmetric",
        "per_channel_affine_float_qparams",
        "contiguous_format",
        "channels_last",
        "preserve_format",
    ]
)
_NUMPY_SCALARS: Final = frozenset(
    [
        "float16",
        "float32",
        "float64",
        "longdouble",
        "int8",
        "int16",
        "int32",
        "int64",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "intc",
        "intp",
        "uintp",
        "bool_",
        "complex64",
        "complex128",
        "object_",
        "str_",
        "bytes_",
        "void",
        "datetime64",
        "timedelta64",
    ]
)
_CLASS_NAME = re.compile(r"^_?[A-Z][A-Za-z0-9_]*$")

# Modules whose every attribute is dangerous to import or call from a pickle.
DANGEROUS_MODULES: Final[dict[str, str]] = {
    "os": "operating-system calls (os.system, os.popen, file writes)",
    "posix": "operating-system calls",
    "nt": "operating-system calls",
    "subprocess": "runs commands",
    "sys": "interpreter internals (sys.modules, sys.path)",
    "runpy": "runs modules and code",
    "code": "compiles and runs Python source",
    "codeop": "compiles Python source",
    "pty": "spawns a shell",
    "pydoc": "resolves any dotted name, runs pager commands",
    "timeit": "executes a statement string",
    "cProfile": "executes a statement string",
    "profile": "executes a statement string",
    "pdb": "executes a statement string",
    "bdb": "executes a statement string",
    "trace": "executes a statement string",
    "doctest": "executes code from text",
    "pip": "installs packages",
    "ensurepip": "installs pip and runs it",
    "distutils": "writes files, spawns compilers",
    "setuptools": "runs build commands",
    "webbrowser": "opens URLs, runs a browser command",
    "shutil": "copies, moves and deletes files",
    "ctypes": "calls native code",
    "_ctypes": "calls native code",
    "cffi": "calls native code",
    "importlib": "imports any module",
    "imp": "imports any module",
    "pkgutil": "imports any module by name",
    "zipimport": "imports code from archives",
    "pickle": "unpickles nested data (a second program)",
    "_pickle": "unpickles nested data (a second program)",
    "cPickle": "unpickles nested data (a second program)",
    "pickletools": "pickle internals",
    "dill": "unpickles functions and code",
    "cloudpickle": "rebuilds functions from code objects",
    "marshal": "loads code objects",
    "shelve": "unpickles from a database file",
    "types": "builds functions and code objects (only SimpleNamespace is allowed)",
    "socket": "opens network connections",
    "ssl": "opens network connections",
    "http": "makes network requests",
    "urllib": "makes network requests",
    "urllib3": "makes network requests",
    "requests": "makes network requests",
    "httpx": "makes network requests",
    "ftplib": "makes network requests",
    "smtplib": "sends mail",
    "telnetlib": "makes network connections",
    "xmlrpc": "makes network requests",
    "asyncio": "runs subprocesses and network I/O",
    "multiprocessing": "starts processes",
    "concurrent": "starts processes and threads",
    "threading": "starts threads that call any target",
    "_thread": "starts threads",
    "signal": "installs signal handlers",
    "tempfile": "creates files",
    "glob": "lists files",
    "fileinput": "reads files",
    "io": "opens files",
    "_io": "opens files",
    "codecs": "opens files (codecs.open)",
    "tarfile": "extracts archives",
    "zipfile": "extracts archives",
    "gc": "reaches every live object",
    "inspect": "reaches frames and globals",
    "idlelib": "IDE internals that run code",
    "lib2to3": "parser internals that unpickle grammar files",
    "venv": "creates environments and runs pip",
    "_osx_support": "runs shell commands",
    "_aix_support": "runs shell commands",
    "_pyrepl": "runs pager commands",
    "cgitb": "inspects frames",
    "platform": "runs commands (platform.popen in old versions)",
    "commands": "Python 2 command runner",
    "popen2": "Python 2 command runner",
    "__builtin__": "Python 2 builtins",
    "operator": "attrgetter/methodcaller reach and call any attribute",
    "_operator": "attrgetter/methodcaller reach and call any attribute",
    "functools": "partial/reduce wrap and call any callable",
    "_functools": "reduce calls any callable",
    "sqlite3": "opens database files",
    "ensurepip.__main__": "installs pip",
    "numpy.f2py": "compiles and evaluates source",
    "numpy.distutils": "runs build commands",
    "numpy.testing": "runstring executes code",
    "numpy.ctypeslib": "loads native libraries",
    "numpy.lib.npyio": "numpy.load with pickles, file writes",
    "numpy.load": "loads another file, with pickles if allowed",
    "numpy.save": "writes files",
    "numpy.savez": "writes files",
    "numpy.fromfile": "reads files",
    "numpy.tofile": "writes files",
    "numpy.memmap": "maps files",
    "torch.load": "loads another pickle",
    "torch.save": "writes files",
    "torch.serialization": "loads and writes pickles",
    "torch.jit": "loads TorchScript and runs Python source",
    "torch.hub": "downloads and runs code",
    "torch.package": "imports code from packages",
    "torch._C": "native interpreter entry points",
    "torch.fx": "evaluates guard expressions and generated code",
    "torch._dynamo": "compiles and evaluates code",
    "torch._inductor": "compiles and loads code",
    "torch.utils.cpp_extension": "compiles and loads native code",
    "torch.utils._config_module": "loads pickled config",
    "torch.utils.bottleneck": "profiles a script (runs it)",
    "torch.utils.data.datapipes.utils.decoder": "unpickles data",
    "torch._export": "evaluates serialized programs",
    "torch.export": "evaluates serialized programs",
    "torch.distributed": "network and RPC",
    "torch.ops": "calls registered native operators",
    "torch.classes": "calls registered native classes",
    "joblib.load": "loads another pickle",
    "joblib.numpy_pickle.load": "loads another pickle",
    "pandas.read_pickle": "loads another pickle",
    "pandas.io": "reads files, loads pickles",
    "keras.models.load_model": "loads a Keras model (Lambda layers run code)",
    "keras.saving": "loads a Keras model (Lambda layers run code)",
    "tensorflow.io": "reads and writes files",
    "tensorflow.keras.models.load_model": "loads a Keras model",
    "sklearn.utils._testing": "test helpers that run code",
    "site": "runs site initialisation",
    "builtins.eval": "evaluates Python source",
    "builtins.exec": "executes Python source",
    "builtins.compile": "compiles Python source",
    "builtins.open": "opens files",
    "builtins.getattr": "reaches any attribute of any object",
    "builtins.setattr": "changes any attribute",
    "builtins.delattr": "deletes any attribute",
    "builtins.__import__": "imports any module",
    "builtins.globals": "reaches module globals",
    "builtins.locals": "reaches frame locals",
    "builtins.vars": "reaches object dictionaries",
    "builtins.input": "reads stdin",
    "builtins.breakpoint": "starts a debugger",
    "builtins.help": "starts the help pager",
    "builtins.exit": "exits the process",
    "builtins.quit": "exits the process",
    "builtins.memoryview": "raw memory access",
    "builtins.type": "creates classes",
    "builtins.super": "reaches parent methods",
    "builtins.classmethod": "wraps callables",
    "builtins.staticmethod": "wraps callables",
    "builtins.property": "wraps callables",
    "builtins.map": "calls any callable lazily",
    "builtins.filter": "calls any callable lazily",
    "builtins.apply": "Python 2 call of any callable",
    "builtins.execfile": "Python 2 exec of a file",
    "builtins.reload": "reloads modules",
    "builtins.__builtins__": "reaches builtins",
    "builtins.print": "writes to stdout (used as a side channel)",
}

# module names that must never be reached through attributes of another module
_REACHED_MODULES: Final = frozenset(
    {
        "os",
        "sys",
        "subprocess",
        "builtins",
        "__builtins__",
        "importlib",
        "pickle",
        "_pickle",
        "shutil",
        "socket",
        "ctypes",
        "runpy",
        "pty",
        "posix",
        "nt",
        "marshal",
        "io",
        "codecs",
        "pdb",
        "eval",
        "exec",
        "system",
        "popen",
        "getattr",
        "__import__",
    }
)
_SAFE_DUNDERS: Final = frozenset({"__newobj__", "__newobj_ex__"})


def _is_dunder(part: str) -> bool:
    return part.startswith("__") and part.endswith("__") and len(part) > 4


def classify(module: str, name: str) -> Classification:
    """Classify the global ``module.name`` a pickle would import."""
    qualname = f"{module}.{name}"
    parts = qualname.split(".")
    advisory = advisory_for(qualname)
    if reason := ALLOWED.get(qualname):
        return Classification("allowed", reason)
    for part in parts[1:]:
        if _is_dunder(part) and part not in _SAFE_DUNDERS:
            return Classification("dangerous", f"reaches the special attribute {part}", advisory)
    if "." in name:
        for part in parts[1:]:
            if part in _REACHED_MODULES:
                return Classification(
                    "dangerous", f"reaches {part!r} through an attribute path of {module!r}", advisory
                )
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if reason := DANGEROUS_MODULES.get(prefix):
            return Classification("dangerous", reason, advisory or advisory_for(prefix))
    if advisory is not None:
        return Classification("dangerous", "named in a published scanner bypass", advisory)
    allowed = _allowed_by_rule(module, name)
    if allowed is not None:
        return Classification("allowed", allowed)
    if module == "builtins":
        return Classification("unknown", "a builtin not on the allowlist")
    return Classification("unknown", "not on the allowlist of known-safe callables")


def _allowed_by_rule(module: str, name: str) -> str | None:
    if "." in name:
        return None
    if module == "__torch__" or module.startswith("__torch__."):
        return "a TorchScript class, resolved by the TorchScript loader; Python cannot import it"
    if module == "torch" and (name in _TORCH_DTYPES or (name.endswith("Storage") and _CLASS_NAME.match(name))):
        return "a torch dtype, layout or storage class"
    if module.startswith("torch.nn.modules.") and _CLASS_NAME.match(name):
        return "a torch.nn layer class; built with __new__ and restored from its state dict"
    if module == "numpy.dtypes" and name.endswith("DType"):
        return "a NumPy dtype class"
    if module.startswith("sklearn.") and _CLASS_NAME.match(name) and not module.startswith("sklearn.utils._testing"):
        return "a scikit-learn estimator or helper class; restored with __new__ and __setstate__"
    if module in ("numpy", "numpy.dtypes") and name in _NUMPY_SCALARS:
        return "a NumPy scalar type"
    cython = name.startswith("__pyx_unpickle_") and _CLASS_NAME.match(name.removeprefix("__pyx_unpickle_"))
    if module.startswith(("numpy.random.", "sklearn.")) and cython:
        return "a Cython-generated unpickler that rebuilds its own extension class from plain state"
    if module.startswith("sklearn.") and name == "newObj":
        return "scikit-learn's Cython helper that calls cls.__new__(cls) for its tree and metric classes"
    return None
