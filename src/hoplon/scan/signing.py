"""Sign and verify a model file or folder with the OpenSSF model-signing format and library.

The signature is a Sigstore bundle holding a DSSE envelope over an in-toto statement whose predicate lists
the SHA-256 digest of every file (``model_signing``'s "files" serialization), signed offline with an
elliptic-curve private key. A folder's signature is written inside it as ``model.sig`` (and left out of the
manifest); a file's signature is written beside it as ``<file>.sig``.

Verification fails on any changed, added or removed file and names each one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hoplon.core.errors import InputError

__all__ = ["SIGNATURE_NAME", "VerifyResult", "default_signature_path", "generate_keypair", "sign_model", "verify_model"]

SIGNATURE_NAME: Final = "model.sig"
_GIT_PATHS: Final = (".git", ".gitattributes", ".github", ".gitignore")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyResult:
    """The outcome of :func:`verify_model`. ``ok`` only when the signature verifies and nothing changed."""

    ok: bool
    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    error: str | None = None

    def describe(self) -> str:
        if self.ok:
            return "signature valid; every file matches"
        parts = [self.error] if self.error else []
        for label, names in (("changed", self.changed), ("added", self.added), ("removed", self.removed)):
            if names:
                parts.append(f"{label}: {', '.join(names)}")
        return "; ".join(p for p in parts if p)


def default_signature_path(model: Path) -> Path:
    return model / SIGNATURE_NAME if model.is_dir() else model.with_name(model.name + ".sig")


def generate_keypair(private_key: str | Path, public_key: str | Path, *, overwrite: bool = False) -> None:
    """Write a new ECDSA P-256 key pair as PEM files (the private key readable by its owner only)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private_path, public_path = Path(private_key), Path(public_key)
    for p in (private_path, public_path):
        if p.exists() and not overwrite:
            raise InputError(f"{p} already exists; pass overwrite=True (--force) to replace it.")
    key = ec.generate_private_key(ec.SECP256R1())
    private_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def _check_model(model: Path) -> None:
    if not model.exists():
        raise InputError(f"The model path {str(model)!r} does not exist.")


def sign_model(
    model: str | Path, *, private_key: str | Path, signature: str | Path | None = None, password: str | None = None
) -> Path:
    """Sign ``model`` (a file or a folder); return where the signature was written."""
    import model_signing

    model = Path(model)
    _check_model(model)
    key = Path(private_key)
    if not key.is_file():
        raise InputError(f"The private key {str(key)!r} does not exist.")
    sig = Path(signature) if signature else default_signature_path(model)
    hashing = model_signing.hashing.Config()  # type: ignore[no-untyped-call]
    if model.is_dir():
        ignored = [SIGNATURE_NAME]
        with contextlib.suppress(ValueError):
            ignored.append(sig.resolve().relative_to(model.resolve()).as_posix())
        hashing = hashing.set_ignored_paths(paths=sorted(set(ignored)), ignore_git_paths=True)
    try:
        config = model_signing.signing.Config()  # type: ignore[no-untyped-call]
        config.use_elliptic_key_signer(private_key=key, password=password)
        config.set_hashing_config(hashing).sign(model, sig)
    except (ValueError, TypeError, OSError) as exc:
        raise InputError(f"Cannot sign {model}: {exc}") from None
    return sig


def verify_model(model: str | Path, *, public_key: str | Path, signature: str | Path | None = None) -> VerifyResult:
    """Verify ``model`` against its signature; name every changed, added and removed file."""
    import model_signing
    from cryptography.exceptions import InvalidSignature

    model = Path(model)
    _check_model(model)
    key = Path(public_key)
    if not key.is_file():
        raise InputError(f"The public key {str(key)!r} does not exist.")
    sig = Path(signature) if signature else default_signature_path(model)
    if not sig.is_file():
        return VerifyResult(ok=False, error=f"no signature at {sig}")
    try:
        verifier = model_signing.verifying.Config()  # type: ignore[no-untyped-call]
        verifier.use_elliptic_key_verifier(public_key=key).verify(model, sig)
    except ValueError as exc:
        message = str(exc)
        if message.startswith("Signature mismatch"):
            # the signature itself verified (the library compares the manifests afterwards): name the files
            return _diff(model, sig)
        return VerifyResult(ok=False, error=f"the signature does not verify: {message.splitlines()[0]}")
    except InvalidSignature:
        return VerifyResult(ok=False, error="the signature does not verify: the signed statement was altered")
    except (OSError, TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
        return VerifyResult(ok=False, error=f"the signature cannot be read: {exc}")
    return VerifyResult(ok=True)


def _statement(sig: Path) -> dict[str, Any]:
    bundle = json.loads(sig.read_text(encoding="utf-8"))
    statement: dict[str, Any] = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    return statement


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _diff(model: Path, sig: Path) -> VerifyResult:
    predicate = _statement(sig)["predicate"]
    expected = {str(r["name"]): str(r["digest"]) for r in predicate["resources"]}
    if model.is_file():
        actual = {".": _sha256(model)}
    else:
        ignored = set(predicate.get("serialization", {}).get("ignore_paths", ())) | set(_GIT_PATHS)
        actual = {}
        for file in sorted(model.rglob("*")):
            rel = file.relative_to(model).as_posix()
            if not file.is_file() or any(rel == i or rel.startswith(i.rstrip("/") + "/") for i in ignored):
                continue
            actual[rel] = _sha256(file)
    changed = tuple(sorted(n for n in expected.keys() & actual.keys() if expected[n] != actual[n]))
    added = tuple(sorted(actual.keys() - expected.keys()))
    removed = tuple(sorted(expected.keys() - actual.keys()))
    if model.is_file() and changed:
        changed = (model.name,)
    return VerifyResult(ok=False, changed=changed, added=added, removed=removed, error="files do not match")
