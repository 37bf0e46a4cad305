"""Turn a walk over a pickle stream into findings: one per offending callable, one per stream problem."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import BinaryIO, Final

from hoplon.core.finding import Finding, Severity
from hoplon.scan._callables import classify
from hoplon.scan._context import INTEGRITY, RESOURCE, Context, finding
from hoplon.scan._pickle_vm import PickleWalk, walk_pickles
from hoplon.scan.types import TAXONOMY

__all__ = ["pickle_findings", "scan_pickle_stream"]

_MAX_OFFSETS: Final = 8
_NESTED_LOADERS: Final = frozenset(
    {"pickle.loads", "_pickle.loads", "pickle._loads", "dill.loads", "cloudpickle.loads", "dill._dill.loads"}
)
# pickle.dumps of a torch tensor stores its storage as torch.storage._load_from_bytes(<a torch.save file>):
# a full torch.load of those bytes. Legitimate, but only as safe as the embedded file, which is scanned.
_TORCH_FROM_BYTES: Final = "torch.storage._load_from_bytes"
_ISSUE_SEVERITY: Final = {
    "malformed": Severity.HIGH,
    "truncated": Severity.HIGH,
    "over-limit": Severity.HIGH,
    "timeout": Severity.HIGH,
    "unresolved-global": Severity.CRITICAL,
    "ext-registry": Severity.HIGH,
    "build-global": Severity.CRITICAL,
}


def scan_pickle_stream(ctx: Context, asset: str, stream: BinaryIO, size: int) -> tuple[PickleWalk, list[Finding]]:
    """Walk every pickle in ``stream`` (from its current position to ``size``) and judge what it imports."""
    walk = walk_pickles(stream, size, deadline=ctx.deadline, max_opcodes=ctx.limits.max_pickle_opcodes)
    return walk, pickle_findings(walk, asset, ctx=ctx)


def pickle_findings(walk: PickleWalk, asset: str, *, ctx: Context | None = None, depth: int = 0) -> list[Finding]:
    """Findings for the globals, calls and stream issues of ``walk``."""
    found: list[Finding] = []
    offsets: dict[str, list[int]] = defaultdict(list)
    first: dict[str, tuple[str, str, int, str, int]] = {}
    for site in walk.globals:
        qualname = f"{site.module}.{site.name}"
        offsets[qualname].append(site.offset)
        first.setdefault(qualname, (site.module, site.name, site.offset, site.opcode, site.pickle_index))
    calls: dict[str, list[int]] = defaultdict(list)
    for call in walk.calls:
        if call.target is not None:
            calls[call.target].append(call.offset)
    for qualname, (module, name, offset, opcode, index) in first.items():
        if qualname == _TORCH_FROM_BYTES and ctx is not None:
            found.extend(_torch_from_bytes(walk, asset, ctx, offset))
            continue
        verdict = classify(module, name)
        if verdict.category == "allowed":
            continue
        evidence: dict[str, object] = {
            "callable": qualname,
            "offset": offset,
            "opcode": opcode,
            "pickle": index,
            "offsets": offsets[qualname][:_MAX_OFFSETS],
            "calls": len(calls.get(qualname, ())),
            "call_offsets": calls.get(qualname, [])[:_MAX_OFFSETS],
            "reason": verdict.reason,
        }
        if verdict.advisory:
            evidence["advisory"] = verdict.advisory
        if verdict.category == "dangerous":
            found.append(
                finding(
                    "scan.pickle.dangerous-callable",
                    Severity.CRITICAL,
                    asset,
                    f"The pickle imports {qualname} ({verdict.reason}); loading it runs code.",
                    title=f"Dangerous callable {qualname}",
                    evidence=evidence,
                )
            )
        else:
            found.append(
                finding(
                    "scan.pickle.unknown-callable",
                    Severity.MEDIUM,
                    asset,
                    f"The pickle imports {qualname}, which is not on the allowlist of known-safe callables.",
                    title=f"Unknown callable {qualname}",
                    evidence=evidence,
                    remediation="Check that this class or function is expected in the model and comes from a "
                    "trusted package; prefer a format that stores no code.",
                )
            )
    unresolved = [c for c in walk.calls if c.target is None]
    if unresolved:
        c = unresolved[0]
        found.append(
            finding(
                "scan.pickle.dynamic-call",
                Severity.CRITICAL,
                asset,
                f"The pickle {c.detail} ({c.opcode} at offset {c.offset}); the callable is computed at load time.",
                title="Call of a computed callable",
                evidence={
                    "callable": None,
                    "offset": c.offset,
                    "opcode": c.opcode,
                    "pickle": c.pickle_index,
                    "count": len(unresolved),
                },
            )
        )
    for issue in walk.issues:
        severity = _ISSUE_SEVERITY.get(issue.kind, Severity.HIGH)
        tax = RESOURCE if issue.kind in ("over-limit", "timeout") else INTEGRITY
        if issue.kind in ("unresolved-global", "ext-registry", "build-global"):
            tax = TAXONOMY
        found.append(
            finding(
                f"scan.pickle.{issue.kind}",
                severity,
                asset,
                f"Pickle stream problem at offset {issue.offset}: {issue.detail}.",
                title=f"Pickle {issue.kind.replace('-', ' ')}",
                evidence={"offset": issue.offset, "pickle": issue.pickle_index, "detail": issue.detail},
                taxonomy=tax,
                remediation="A loader may already run what came before this point: treat the file as unsafe "
                "until its origin is confirmed.",
            )
        )
    if walk.trailing_bytes and not walk.torch_legacy:
        found.append(
            finding(
                "scan.pickle.trailing-data",
                Severity.INFO,
                asset,
                f"{walk.trailing_bytes} bytes after the last STOP are not a pickle.",
                evidence={"offset": walk.end, "bytes": walk.trailing_bytes},
                taxonomy=INTEGRITY,
                remediation="",
            )
        )
    if depth < 3:
        for call in walk.calls:
            if call.target in _NESTED_LOADERS and call.bytes_arg:
                nested = walk_pickles(
                    io.BytesIO(call.bytes_arg),
                    len(call.bytes_arg),
                    deadline=ctx.deadline if ctx else float("inf"),
                )
                for f in pickle_findings(nested, f"{asset}@{call.offset}", ctx=ctx, depth=depth + 1):
                    found.append(f)
    return found


def _torch_from_bytes(walk: PickleWalk, asset: str, ctx: Context, offset: int) -> list[Finding]:
    """Scan each embedded ``torch.save`` file as an archive member; flag calls whose bytes are not visible."""
    found: list[Finding] = []
    for call in walk.calls:
        if call.target != _TORCH_FROM_BYTES:
            continue
        if call.bytes_arg is None:
            found.append(
                finding(
                    "scan.pickle.nested-load",
                    Severity.HIGH,
                    asset,
                    f"torch.storage._load_from_bytes (a full torch.load) at offset {call.offset} gets bytes the "
                    "scanner cannot inspect (computed, or over the size kept in memory).",
                    title="Nested torch.load of uninspected bytes",
                    evidence={"callable": _TORCH_FROM_BYTES, "offset": offset, "call_offsets": [call.offset]},
                )
            )
            continue
        data = call.bytes_arg
        ctx.scan_stream(ctx, f"{asset}!storage@{call.offset}", io.BytesIO(data), len(data), 1)
    return found
