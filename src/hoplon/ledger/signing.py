"""Ed25519 keys for checkpoints: create, load (PEM, 0600), sign and check."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hoplon.core.errors import InputError
from hoplon.core.files import create_once

__all__ = ["key_id", "load_or_create_key", "load_public_key", "public_pem", "sign", "verify_signature"]


def key_id(public: Ed25519PublicKey) -> str:
    """The first 16 hex digits of SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_or_create_key(path: str | Path) -> Ed25519PrivateKey:
    """Read a PEM private key, or create one (mode 0600) with its ``.pub`` beside it when absent."""
    path = Path(path)
    if path.exists():
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except ValueError as exc:
            raise InputError(f"The ledger signing key {path} is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InputError(f"The ledger signing key {path} is not an Ed25519 key.")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if create_once(path, pem) != pem:  # another process created it first: use its key
        return load_or_create_key(path)
    path.with_name(path.name + ".pub").write_text(public_pem(key.public_key()))
    return key


def load_public_key(text: str | bytes) -> Ed25519PublicKey:
    """A PEM public key (or a PEM private key, whose public half is taken)."""
    data = text.encode() if isinstance(text, str) else text
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except ValueError:
            raise InputError("The key is neither a PEM public key nor a PEM private key.") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise InputError("The key is not an Ed25519 key.") from None
        return private.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise InputError("The public key is not an Ed25519 key.")
    return key


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return key.sign(message).hex()


def verify_signature(public: Ed25519PublicKey, message: bytes, signature_hex: str) -> bool:
    try:
        public.verify(bytes.fromhex(signature_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True
