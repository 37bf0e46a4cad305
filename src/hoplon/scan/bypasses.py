"""Published scanner bypasses, as data: what each technique is, where it was published, and what it uses.

Each record names the advisory or write-up it came from, the scanner(s) it defeated, and either the
callables it smuggles in (``callables``) or the container trick it relies on (``technique``). The test suite
has one regression test per record (``tests/scan/test_bypasses.py``), building the file from opcodes.
Advisory ids are as published by the scanners' maintainers (GitHub security advisories and CVEs) or, for
write-ups without an id, the publisher and title.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BYPASSES", "Bypass", "advisory_for"]


@dataclass(frozen=True, slots=True)
class Bypass:
    """One published way past a model-file scanner."""

    key: str
    advisory: str
    defeated: tuple[str, ...]
    technique: str
    callables: tuple[str, ...] = ()


BYPASSES: tuple[Bypass, ...] = (
    Bypass(
        "pip-main",
        "CVE-2025-1716 (picklescan: pip not treated as unsafe)",
        ("picklescan",),
        "calls pip.main(['install', ...]) to install an attacker's package",
        ("pip.main", "pip._internal.main", "pip._internal.cli.main.main"),
    ),
    Bypass(
        "nonstandard-extension-in-zip",
        "CVE-2025-1889 (picklescan: only standard pickle extensions scanned)",
        ("picklescan",),
        "PyTorch archive whose pickle member has a non-standard extension",
    ),
    Bypass(
        "zip-name-mismatch",
        "CVE-2025-1944 (picklescan: ZIP local/central file name mismatch)",
        ("picklescan",),
        "a ZIP entry's local-header name differs from its central-directory name",
    ),
    Bypass(
        "zip-flag-bits",
        "CVE-2025-1945 (picklescan: flipped ZIP header flag bits)",
        ("picklescan",),
        "ZIP header flag bits flipped so the scanner's ZIP reader fails while torch.load still reads it",
    ),
    Bypass(
        "zip-bad-crc",
        "CVE-2025-10156 (picklescan: ZIP entry with a bad CRC)",
        ("picklescan",),
        "a ZIP entry's CRC is wrong: Python's zipfile raises, PyTorch's reader ignores it",
    ),
    Bypass(
        "extension-as-pickle",
        "CVE-2025-10155 (picklescan: pickle hidden behind a .bin/.pt extension)",
        ("picklescan",),
        "a raw pickle named like a PyTorch file is not sent through the pickle scanner",
    ),
    Bypass(
        "submodule-of-unsafe-module",
        "CVE-2025-10157 (picklescan: unsafe module reached through a submodule)",
        ("picklescan",),
        "imports a dangerous callable from a submodule of a denylisted module",
        (
            "asyncio.unix_events._UnixSelectorEventLoop._make_subprocess_transport",
            "asyncio.subprocess.create_subprocess_exec",
        ),
    ),
    Bypass(
        "stack-global-from-memo",
        "picklescan STACK_GLOBAL operands fetched from the memo (GHSA advisories on picklescan, 2025)",
        ("picklescan",),
        "STACK_GLOBAL whose module and name strings come from BINGET of the memo, not the previous opcodes",
        ("os.system",),
    ),
    Bypass(
        "data-after-stop",
        "fickling / picklescan: second pickle after STOP (Trail of Bits, 'Never a dill moment', 2021)",
        ("picklescan", "modelscan"),
        "a benign pickle, STOP, then a malicious pickle read by a second load() call",
        ("os.system",),
    ),
    Bypass(
        "broken-stream-payload-first",
        "ReversingLabs 'nullifAI' (2025): malicious models on Hugging Face with broken pickles",
        ("picklescan",),
        "payload at the start of the stream, then a corrupt opcode: the scanner errors, the loader runs it",
        ("os.system",),
    ),
    Bypass(
        "7z-torch-archive",
        "ReversingLabs 'nullifAI' (2025): PyTorch model compressed with 7z instead of ZIP",
        ("picklescan",),
        "the model is wrapped in a 7z archive the scanner does not open",
    ),
    Bypass(
        "runpy-run-code",
        "picklescan missing unsafe globals: runpy._run_code (GHSA, 2025)",
        ("picklescan", "modelscan"),
        "runs a code string through runpy",
        ("runpy._run_code", "runpy._run_module_code", "runpy.run_path", "runpy.run_module"),
    ),
    Bypass(
        "pydoc-locate",
        "picklescan missing unsafe globals: pydoc.locate / pydoc.pipepager (GHSA, 2025)",
        ("picklescan", "modelscan"),
        "resolves any dotted name (pydoc.locate) or runs a shell pager command (pydoc.pipepager)",
        ("pydoc.locate", "pydoc.pipepager"),
    ),
    Bypass(
        "operator-attrgetter",
        "modelscan / picklescan: operator.attrgetter and methodcaller reach any attribute (GHSA, 2025)",
        ("picklescan", "modelscan", "fickling"),
        "builds getattr chains without builtins.getattr",
        ("operator.attrgetter", "operator.methodcaller", "_operator.attrgetter"),
    ),
    Bypass(
        "builtins-getattr-chain",
        "fickling: getattr chains classified as likely safe (GHSA on fickling, 2025)",
        ("fickling",),
        "builtins.getattr(module, 'system') then REDUCE on the result",
        ("builtins.getattr",),
    ),
    Bypass(
        "functools-partial",
        "picklescan / modelscan: functools.partial and functools.reduce wrap unsafe callables (2025)",
        ("picklescan", "modelscan"),
        "wraps a callable in functools.partial so the dangerous call happens later",
        ("functools.partial", "functools.reduce", "_functools.reduce"),
    ),
    Bypass(
        "numpy-load-object-array",
        "modelscan / picklescan: numpy.load with allow_pickle reached from a pickle (2025)",
        ("picklescan", "modelscan"),
        "numpy.load(path, allow_pickle=True) of an attacker file from inside a pickle",
        (
            "numpy.load",
            "numpy.lib.npyio.load",
            "numpy.testing._private.utils.runstring",
            "numpy.f2py.crackfortran._eval_length",
        ),
    ),
    Bypass(
        "torch-loaders",
        "picklescan missing unsafe torch globals: torch.jit / torch._C loaders and exec wrappers (GHSA, 2025)",
        ("picklescan", "modelscan"),
        "torch helpers that load another model or run Python source",
        (
            "torch.load",
            "torch.jit.load",
            "torch.jit.unsupported_tensor_ops.execWrapper",
            "torch._C._jit_compile",
            "torch.fx.experimental.symbolic_shapes.ShapeEnv.evaluate_guards_expression",
            "torch._inductor.codecache.compile_file",
            "torch.utils._config_module.ConfigModule.load_config",
            "torch.hub.load",
        ),
    ),
    Bypass(
        "nested-pickle-loads",
        "picklescan / modelscan: _pickle.loads of an embedded pickle (2025)",
        ("picklescan", "modelscan"),
        "a pickle that unpickles a second, embedded pickle",
        ("_pickle.loads", "pickle.loads", "pickle._loads", "dill.loads", "_pickle.Unpickler"),
    ),
    Bypass(
        "stdlib-exec-gadgets",
        "picklescan missing unsafe stdlib globals: idlelib, lib2to3, bdb, trace, ensurepip, distutils (GHSA, 2025)",
        ("picklescan", "modelscan"),
        "standard-library functions that run code or commands, absent from denylists",
        (
            "idlelib.pyshell.ModifiedInterpreter.runcommand",
            "idlelib.autocomplete.AutoComplete.get_entity",
            "idlelib.calltip.get_entity",
            "idlelib.run.Executive.runcode",
            "lib2to3.pgen2.grammar.Grammar.loads",
            "lib2to3.pgen2.pgen.ParserGenerator.make_label",
            "bdb.Bdb.run",
            "trace.Trace.run",
            "ensurepip._run_pip",
            "distutils.file_util.write_file",
            "doctest.debug_script",
            "_osx_support._read_output",
            "_aix_support._read_cmd_output",
            "uuid._get_command_stdout",
            "venv.create",
            "cgitb.lookup",
        ),
    ),
    Bypass(
        "stdlib-command-gadgets-2026",
        "CVE-2026-56315 (picklescan < 1.0.4: uuid, imaplib, _pyrepl.pager, _osx_support, _aix_support not blocked)",
        ("picklescan",),
        "standard-library helpers that spawn a shell command, missing from picklescan's denylist",
        (
            "uuid._get_command_stdout",
            "imaplib.IMAP4_stream",
            "_pyrepl.pager.pipe_pager",
            "_osx_support._read_output",
            "_aix_support._read_cmd_output",
        ),
    ),
    Bypass(
        "logging-filehandler",
        "CVE-2026-56304 (picklescan before 1.0.1: logging.FileHandler creates files on the loading host)",
        ("picklescan",),
        "instantiating logging.FileHandler creates (or truncates) an arbitrary file when unpickled",
        ("logging.FileHandler",),
    ),
    Bypass(
        "timeit-cprofile",
        "picklescan / modelscan: timeit.timeit, cProfile.run and profile.run execute code strings (2025)",
        ("picklescan", "modelscan"),
        "profilers and timers that exec a statement",
        ("timeit.timeit", "timeit.repeat", "timeit.Timer", "cProfile.run", "cProfile.runctx", "profile.run"),
    ),
    Bypass(
        "code-interactive",
        "picklescan / modelscan: code.InteractiveInterpreter.runsource (2025)",
        ("picklescan", "modelscan"),
        "the code module compiles and runs source",
        (
            "code.InteractiveInterpreter.runsource",
            "code.InteractiveConsole.push",
            "code.interact",
            "codeop.compile_command",
        ),
    ),
    Bypass(
        "pty-spawn",
        "picklescan / modelscan: pty.spawn (2025)",
        ("picklescan", "modelscan"),
        "spawns a shell on a pseudo-terminal",
        ("pty.spawn",),
    ),
    Bypass(
        "ctypes",
        "picklescan / modelscan: ctypes reaches libc system() (2025)",
        ("picklescan", "modelscan"),
        "calls C functions directly",
        ("ctypes.CDLL", "ctypes.cdll.LoadLibrary", "ctypes.util.find_library"),
    ),
    Bypass(
        "ext-opcodes-copyreg",
        "fickling / picklescan: EXT1/EXT2/EXT4 opcodes resolve globals via copyreg's extension registry",
        ("picklescan", "modelscan", "fickling"),
        "a global imported by extension code, with no GLOBAL opcode naming it",
    ),
    Bypass(
        "dotted-name-through-safe-module",
        "picklescan: dotted global names reach unsafe modules through allowed ones (protocol 4 getattr path)",
        ("picklescan", "modelscan"),
        "GLOBAL 'torch' 'serialization.os.system': an allowed module prefix, an unsafe attribute path",
        ("torch.serialization.os.system",),
    ),
    Bypass(
        "webbrowser-shutil",
        "modelscan unsafe-globals gaps: webbrowser.open, shutil.rmtree (2024)",
        ("modelscan",),
        "opens URLs or removes files",
        ("webbrowser.open", "shutil.rmtree", "shutil.move"),
    ),
    Bypass(
        "importlib-import",
        "fickling / picklescan: importlib.import_module and builtins.__import__ (2024-2025)",
        ("picklescan", "fickling"),
        "imports any module by name",
        ("importlib.import_module", "builtins.__import__", "importlib.__import__"),
    ),
    Bypass(
        "reduce-exec-reverse-shell",
        "JFrog 'Data Scientists Targeted by Malicious Hugging Face ML Models with Silent Backdoor' (2024)",
        (),
        "__reduce__ returning builtins.exec with a reverse-shell payload in a PyTorch model",
        ("builtins.exec", "builtins.eval", "builtins.compile"),
    ),
    Bypass(
        "python2-builtin-names",
        "protocol 0-2 compat names: __builtin__.eval is mapped to builtins.eval by the loader",
        ("modelscan",),
        "Python 2 module names the unpickler maps to Python 3 ones",
        ("__builtin__.eval",),
    ),
)


def _index() -> dict[str, tuple[int, str]]:
    index: dict[str, tuple[int, str]] = {}
    for order, bypass in enumerate(BYPASSES):
        for name in bypass.callables:
            index.setdefault(name, (order, bypass.advisory))
    return index


_ADVISORY: dict[str, tuple[int, str]] = _index()


def advisory_for(qualname: str) -> str | None:
    """The advisory of the first bypass that lists ``qualname`` (or a parent path of it).

    One dictionary lookup per dotted prefix (it runs for every callable of every pickle scanned).
    """
    parts = qualname.split(".")
    hits = [hit for end in range(1, len(parts) + 1) if (hit := _ADVISORY.get(".".join(parts[:end]))) is not None]
    return min(hits)[1] if hits else None
