"""`ModelRegistry`: models addressed by content digest, scanned and (optionally) signature-verified at push,
re-hashed at load, with aliases (``prod``, ``canary`` with a percentage, ``previous``), a per-model kill switch,
and every change a ledger event.

The index is one JSON file replaced atomically; blobs live under ``blobs/sha256/<hex>``. An unscanned, unsafe,
unsigned (when signatures are required) or retired digest is never resolved.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar

from hoplon.core.errors import InputError, PolicyViolation, UnsafeArtifactError
from hoplon.core.finding import Severity

if TYPE_CHECKING:
    from hoplon.ledger import Ledger

__all__ = ["IntegrityError", "KillSwitch", "ModelRegistry", "ModelVersion", "RegistryState", "open_registry"]

Alias = Literal["prod", "canary"]
MAX_FALLBACK_BYTES = 64 * 1024


class IntegrityError(UnsafeArtifactError):
    """A stored blob no longer matches its digest (corruption or tampering)."""


@dataclass(frozen=True, slots=True)
class ModelVersion:
    """One pushed model file."""

    digest: str
    name: str
    size: int
    scanned: bool
    signed: bool
    retired: bool
    pushed_at: float


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """A model switched off: ``deny`` (503) or a static ``fallback`` answer."""

    mode: Literal["deny", "fallback"]
    answer: Any = None


_VERSION_FIELDS = frozenset(f.name for f in fields(ModelVersion)) - {"digest"}


def _unroutable(data: Mapping[str, Any], digest: str, require_signature: bool) -> tuple[type[Exception], str] | None:
    """Why ``digest`` may not be routed (the exception class and message), or ``None``."""
    version = data["versions"].get(digest)
    if version is None:
        return InputError, f"No version {digest} in the registry."
    if version["retired"]:
        return PolicyViolation, f"{digest} is retired and is never routed."
    if not version["scanned"]:
        return PolicyViolation, f"{digest} was not scanned and is never routed."
    if require_signature and not version["signed"]:
        return PolicyViolation, f"{digest} is unsigned and this registry requires signatures."
    return None


def _bucket(request_key: str) -> int:
    """A request key's canary bucket in [0, 10000): the same key always lands in the same bucket."""
    return int.from_bytes(hashlib.sha256(request_key.encode()).digest()[:4], "big") % 10_000


@dataclass(frozen=True, slots=True)
class RegistryState:
    """One read of the index: resolve, kill switches and versions without touching the disk again.

    A running gateway keeps one of these and swaps it for a new one when the index changes, so every request
    sees one consistent routing table.
    """

    data: Mapping[str, Any]
    require_signature: bool = False

    def names(self) -> list[str]:
        """Every model name that has aliases (served or once served)."""
        return sorted(self.data["aliases"])

    def version(self, digest: str) -> ModelVersion | None:
        entry = self.data["versions"].get(digest)
        if entry is None:
            return None
        return ModelVersion(digest=digest, **{k: v for k, v in entry.items() if k in _VERSION_FIELDS})

    def kill_switch(self, name: str) -> KillSwitch | None:
        k = self.data["kill"].get(name)
        return KillSwitch(k["mode"], k.get("answer")) if k else None

    def routable(self, digest: str) -> None:
        """Raise (``InputError`` or ``PolicyViolation``) when ``digest`` may not be routed."""
        why = _unroutable(self.data, digest, self.require_signature)
        if why is not None:
            raise why[0](why[1])

    def resolve(self, name: str, *, request_key: str = "", exclude: frozenset[str] = frozenset()) -> str:
        """The digest that serves a request (the canary for its share of ``request_key`` hashes, else prod).

        ``exclude`` lists digests the caller has found unusable (an integrity failure not yet in the index).
        """
        aliases = self.data["aliases"].get(name, {})
        canary = aliases.get("canary")
        if (
            canary
            and request_key
            and canary["digest"] not in exclude
            and _bucket(request_key) < canary["percent"] * 100
            and _unroutable(self.data, canary["digest"], self.require_signature) is None
        ):
            return str(canary["digest"])
        prod = aliases.get("prod")
        if not prod:
            raise InputError(f"Model {name!r} has no prod version.")
        if prod in exclude:
            raise PolicyViolation(f"{prod} failed its integrity check and is not routed.")
        self.routable(prod)
        return str(prod)


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _exclusive(method: Callable[Concatenate[ModelRegistry, _P], _R]) -> Callable[Concatenate[ModelRegistry, _P], _R]:
    """Run a change under the registry's exclusive file lock: the CLI, several gateway workers and other hosts on a
    shared folder each read-modify-write the index, and none may lose another's change."""

    @functools.wraps(method)
    def locked(self: ModelRegistry, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with self._change_lock():
            return method(self, *args, **kwargs)

    return locked


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class ModelRegistry:
    """A registry folder. ``ledger`` receives one event per change (kind ``registry.<action>``).

    Args:
        root: the registry folder (created).
        ledger: where events go; ``None`` only for read-only use (a change without a ledger is refused).
        require_signature: refuse to push (and to resolve) versions without a verified signature.
    """

    def __init__(self, root: str | Path, *, ledger: Ledger | None = None, require_signature: bool = False) -> None:
        self.root = Path(root)
        self.ledger = ledger
        self.require_signature = require_signature
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        self._index_path = self.root / "index.json"

    # ------------------------------------------------------------------ index

    def _read(self) -> dict[str, Any]:
        if not self._index_path.exists():
            return {"versions": {}, "aliases": {}, "kill": {}}
        try:
            data: dict[str, Any] = json.loads(self._index_path.read_text())
        except (OSError, ValueError) as exc:
            raise IntegrityError(f"The registry index {self._index_path} cannot be read: {exc}") from None
        return data

    def _write(self, data: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".index-")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
        Path(tmp).replace(self._index_path)

    def _event(self, action: str, record: dict[str, Any]) -> None:
        if self.ledger is None:
            raise InputError("A registry change needs a ledger (every change is a ledger event).")
        self.ledger.append({"action": action, **record}, kind=f"registry.{action}", identity=record.get("model"))

    @contextlib.contextmanager
    def _change_lock(self) -> Iterator[None]:
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def blob(self, digest: str) -> Path:
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise InputError(f"A digest is written sha256:<64 hex digits>. Got {digest!r}.")
        return self.root / "blobs" / "sha256" / digest[7:]

    def signature_path(self, digest: str) -> Path:
        """Where the signature of a signed push is kept (beside its blob)."""
        return self.blob(digest).with_suffix(".sig")

    # ------------------------------------------------------------------ changes

    @_exclusive
    def push(
        self, path: str | Path, *, name: str, public_key: str | Path | None = None, signature: str | Path | None = None
    ) -> ModelVersion:
        """Scan ``path`` (and verify its signature when a key is given), store it by digest, record the event."""
        from hoplon.scan import fails_policy, scan_file

        path = Path(path)
        if not path.is_file():
            raise InputError(f"The model file {path} does not exist.")
        records = scan_file(path)
        if fails_policy(records, Severity.HIGH):
            worst = max(records, key=lambda r: r.severity)
            raise UnsafeArtifactError(f"{path} failed the scan ({worst.verdict}); it is not pushed.")
        signed = False
        if public_key is not None:
            from hoplon.scan import verify_model
            from hoplon.scan.signing import default_signature_path

            result = verify_model(path, public_key=public_key, signature=signature)
            if not result.ok:
                raise UnsafeArtifactError(f"The signature of {path} does not verify: {result.describe()}.")
            signed = True
            signature = Path(signature) if signature is not None else default_signature_path(path)
        elif self.require_signature:
            raise UnsafeArtifactError(f"{path} has no verified signature and this registry requires one.")
        digest = _sha256(path)
        target = self.blob(digest)
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(target)
        if signed and signature is not None:
            # kept beside the blob, so a gateway can verify the signature again each time it loads the blob
            tmp = target.with_suffix(".sig.tmp")
            shutil.copyfile(signature, tmp)
            tmp.replace(self.signature_path(digest))
        data = self._read()
        version = ModelVersion(digest, name, path.stat().st_size, True, signed, False, time.time())
        entry = {"name": name, "size": version.size, "scanned": True, "signed": signed, "retired": False,
                 "pushed_at": version.pushed_at}  # fmt: skip
        data["versions"][digest] = entry
        self._event("push", {"model": name, "digest": digest, "signed": signed, "scanned": True})
        self._write(data)
        return version

    @_exclusive
    def promote(self, name: str, digest: str, *, alias: Alias = "prod", percent: float | None = None) -> None:
        """Point ``alias`` of ``name`` at ``digest`` (``canary`` takes ``percent`` of requests)."""
        data = self._read()
        self._routable(data, digest)
        aliases = data["aliases"].setdefault(name, {})
        if alias == "prod":
            if aliases.get("prod") and aliases["prod"] != digest:
                aliases["previous"] = aliases["prod"]
            aliases["prod"] = digest
            if aliases.get("canary", {}).get("digest") == digest:
                aliases.pop("canary")
        else:
            if percent is None or not 0 < percent <= 100:
                raise InputError(f"A canary needs a percentage in (0, 100]. Got {percent}.")
            aliases["canary"] = {"digest": digest, "percent": percent}
        self._event("promote", {"model": name, "digest": digest, "alias": alias, "percent": percent})
        self._write(data)

    @_exclusive
    def rollback(self, name: str) -> str:
        """Make ``previous`` the ``prod`` version again (and drop any canary); return the digest now served."""
        data = self._read()
        aliases = data["aliases"].get(name, {})
        previous = aliases.get("previous")
        if not previous:
            raise PolicyViolation(f"Model {name!r} has no previous version to roll back to.")
        self._routable(data, previous)
        aliases["previous"], aliases["prod"] = aliases.get("prod"), previous
        aliases.pop("canary", None)
        self._event("rollback", {"model": name, "digest": previous})
        self._write(data)
        return str(previous)

    @_exclusive
    def retire(self, digest: str) -> None:
        """Retire ``digest``: never routed again. Retiring the ``prod`` version rolls back first."""
        data = self._read()
        version = data["versions"].get(digest)
        if version is None:
            raise InputError(f"No version {digest} in the registry.")
        name = version["name"]
        aliases = data["aliases"].get(name, {})
        if aliases.get("prod") == digest:
            if not aliases.get("previous"):
                raise PolicyViolation(f"{digest} serves {name!r} and there is nothing to roll back to.")
            aliases["prod"], aliases["previous"] = aliases["previous"], None
        if aliases.get("canary", {}).get("digest") == digest:
            aliases.pop("canary")
        if aliases.get("previous") == digest:
            aliases["previous"] = None
        version["retired"] = True
        self._event("retire", {"model": name, "digest": digest})
        self._write(data)

    @_exclusive
    def auto_rollback(self, name: str, bad: str, *, reason: str) -> str | None:
        """Contain an integrity failure of ``bad`` (its blob no longer matches its digest or signature).

        ``bad`` is retired (never routed again) and ``prod`` moves to the last good version: ``previous`` when its
        blob still verifies, else the newest earlier version of ``name`` that is routable and verifies. Returns
        the digest now served, or ``None`` when no good version is left (the model then fails closed). One
        ledger event, ``registry.auto_rollback``.
        """
        data = self._read()
        version = data["versions"].get(bad)
        if version is None or version["name"] != name:
            raise InputError(f"No version {bad} of {name!r} in the registry.")
        version["retired"] = True
        version["integrity_failure"] = reason[:500]
        aliases = data["aliases"].setdefault(name, {})
        good: str | None = None
        if aliases.get("prod") == bad:
            earlier = sorted(
                (
                    d
                    for d, v in data["versions"].items()
                    if v["name"] == name and d != bad and v["pushed_at"] <= version["pushed_at"]
                ),
                key=lambda d: data["versions"][d]["pushed_at"],
                reverse=True,
            )
            previous = aliases.get("previous")
            for candidate in ([previous] if previous else []) + [d for d in earlier if d != previous]:
                if _unroutable(data, candidate, self.require_signature) is None and self._verifies(candidate):
                    good = candidate
                    break
            if good is not None:
                aliases["prod"] = good
            aliases["previous"] = None
        else:
            good = aliases.get("prod")
        if aliases.get("canary", {}).get("digest") == bad:
            aliases.pop("canary")
        if aliases.get("previous") == bad:
            aliases["previous"] = None
        self._event("auto_rollback", {"model": name, "digest": good, "from": bad, "reason": reason[:500]})
        self._write(data)
        return good

    def _verifies(self, digest: str) -> bool:
        try:
            self.load_path(digest)
        except IntegrityError:
            return False
        return True

    @_exclusive
    def kill(self, name: str, *, mode: Literal["deny", "fallback"] = "deny", answer: Any = None) -> None:
        """Switch ``name`` off: refuse every request, or answer ``answer`` without calling the model."""
        if mode not in ("deny", "fallback"):
            raise InputError(f"A kill switch is deny or fallback. Got {mode!r}.")
        if len(json.dumps(answer)) > MAX_FALLBACK_BYTES:
            raise InputError(f"A fallback answer is at most {MAX_FALLBACK_BYTES} bytes of JSON.")
        data = self._read()
        data["kill"][name] = {"mode": mode, "answer": answer}
        self._event("kill", {"model": name, "mode": mode})
        self._write(data)

    @_exclusive
    def revive(self, name: str) -> None:
        data = self._read()
        data["kill"].pop(name, None)
        self._event("revive", {"model": name})
        self._write(data)

    # ------------------------------------------------------------------ reading

    def _routable(self, data: dict[str, Any], digest: str) -> None:
        RegistryState(data, self.require_signature).routable(digest)

    def state(self) -> RegistryState:
        """The index as one consistent, in-memory snapshot."""
        return RegistryState(self._read(), self.require_signature)

    @property
    def index_path(self) -> Path:
        return self._index_path

    def versions(self) -> list[ModelVersion]:
        state = self.state()
        return [v for d in sorted(state.data["versions"]) if (v := state.version(d)) is not None]

    def aliases(self, name: str) -> dict[str, Any]:
        return dict(self._read()["aliases"].get(name, {}))

    def kill_switch(self, name: str) -> KillSwitch | None:
        k = self._read()["kill"].get(name)
        return KillSwitch(k["mode"], k.get("answer")) if k else None

    def resolve(self, name: str, *, request_key: str = "") -> str:
        """The digest that serves a request (the canary for its share of ``request_key`` hashes, else prod)."""
        return self.state().resolve(name, request_key=request_key)

    def load_path(self, digest: str) -> Path:
        """The blob of ``digest``, re-hashed: a corrupt or altered blob raises :class:`IntegrityError`."""
        path = self.blob(digest)
        if not path.is_file():
            raise IntegrityError(f"The blob of {digest} is missing.")
        actual = _sha256(path)
        if actual != digest:
            raise IntegrityError(f"The blob of {digest} is corrupt (it hashes to {actual}).")
        return path


def open_registry(root: str | Path, *, require_signature: bool = False) -> ModelRegistry:
    """The registry at ``root`` with its own ledger (``registry.db``, signed with ``ledger.key`` inside)."""
    from hoplon.ledger import Ledger

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    ledger = Ledger.open(f"sqlite:///{root / 'registry.db'}", signing_key=str(root / "ledger.key"), durable=True)
    return ModelRegistry(root, ledger=ledger, require_signature=require_signature)
