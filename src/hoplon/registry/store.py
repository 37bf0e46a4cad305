"""`ModelRegistry`: models addressed by content digest, scanned and (optionally) signature-verified at push,
re-hashed at load, with aliases (``prod``, ``canary`` with a percentage, ``previous``), a per-model kill switch,
and every change a ledger event.

The index is one JSON file replaced atomically; blobs live under ``blobs/sha256/<hex>``. An unscanned, unsafe,
unsigned (when signatures are required) or retired digest is never resolved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from hoplon.core.errors import InputError, PolicyViolation, UnsafeArtifactError
from hoplon.core.finding import Severity

if TYPE_CHECKING:
    from hoplon.ledger import Ledger

__all__ = ["IntegrityError", "KillSwitch", "ModelRegistry", "ModelVersion"]

Alias = Literal["prod", "canary"]


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

    def blob(self, digest: str) -> Path:
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise InputError(f"A digest is written sha256:<64 hex digits>. Got {digest!r}.")
        return self.root / "blobs" / "sha256" / digest[7:]

    # ------------------------------------------------------------------ changes

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

            result = verify_model(path, public_key=public_key, signature=signature)
            if not result.ok:
                raise UnsafeArtifactError(f"The signature of {path} does not verify: {result.describe()}.")
            signed = True
        elif self.require_signature:
            raise UnsafeArtifactError(f"{path} has no verified signature and this registry requires one.")
        digest = _sha256(path)
        target = self.blob(digest)
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            shutil.copyfile(path, tmp)
            tmp.replace(target)
        data = self._read()
        version = ModelVersion(digest, name, path.stat().st_size, True, signed, False, time.time())
        entry = {"name": name, "size": version.size, "scanned": True, "signed": signed, "retired": False,
                 "pushed_at": version.pushed_at}  # fmt: skip
        data["versions"][digest] = entry
        self._event("push", {"model": name, "digest": digest, "signed": signed, "scanned": True})
        self._write(data)
        return version

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

    def kill(self, name: str, *, mode: Literal["deny", "fallback"] = "deny", answer: Any = None) -> None:
        """Switch ``name`` off: refuse every request, or answer ``answer`` without calling the model."""
        data = self._read()
        data["kill"][name] = {"mode": mode, "answer": answer}
        self._event("kill", {"model": name, "mode": mode})
        self._write(data)

    def revive(self, name: str) -> None:
        data = self._read()
        data["kill"].pop(name, None)
        self._event("revive", {"model": name})
        self._write(data)

    # ------------------------------------------------------------------ reading

    def _routable(self, data: dict[str, Any], digest: str) -> None:
        version = data["versions"].get(digest)
        if version is None:
            raise InputError(f"No version {digest} in the registry.")
        if version["retired"]:
            raise PolicyViolation(f"{digest} is retired and is never routed.")
        if not version["scanned"]:
            raise PolicyViolation(f"{digest} was not scanned and is never routed.")
        if self.require_signature and not version["signed"]:
            raise PolicyViolation(f"{digest} is unsigned and this registry requires signatures.")

    def versions(self) -> list[ModelVersion]:
        return [ModelVersion(digest=d, **v) for d, v in sorted(self._read()["versions"].items())]

    def aliases(self, name: str) -> dict[str, Any]:
        return dict(self._read()["aliases"].get(name, {}))

    def kill_switch(self, name: str) -> KillSwitch | None:
        k = self._read()["kill"].get(name)
        return KillSwitch(k["mode"], k.get("answer")) if k else None

    def resolve(self, name: str, *, request_key: str = "") -> str:
        """The digest that serves a request (the canary for its share of ``request_key`` hashes, else prod)."""
        data = self._read()
        aliases = data["aliases"].get(name, {})
        canary = aliases.get("canary")
        if canary and request_key:
            bucket = int.from_bytes(hashlib.sha256(request_key.encode()).digest()[:4], "big") % 10_000
            if bucket < canary["percent"] * 100:
                with contextlib.suppress(PolicyViolation, InputError):
                    self._routable(data, canary["digest"])
                    return str(canary["digest"])
        prod = aliases.get("prod")
        if not prod:
            raise InputError(f"Model {name!r} has no prod version.")
        self._routable(data, prod)
        return str(prod)

    def load_path(self, digest: str) -> Path:
        """The blob of ``digest``, re-hashed: a corrupt or altered blob raises :class:`IntegrityError`."""
        path = self.blob(digest)
        if not path.is_file():
            raise IntegrityError(f"The blob of {digest} is missing.")
        actual = _sha256(path)
        if actual != digest:
            raise IntegrityError(f"The blob of {digest} is corrupt (it hashes to {actual}).")
        return path
