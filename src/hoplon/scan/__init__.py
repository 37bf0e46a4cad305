"""Supply-chain scanning of model files: pickle analysis without unpickling, archive and header checks,
signing and verification (OpenSSF model-signing), and CycloneDX ML-BOMs.

``import hoplon.scan`` stays light: torch, numpy, onnx, h5py, cryptography and cyclonedx are imported only
by the functions that need them (``safe_load``, signing, BOMs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hoplon.core.lazy import lazy_getattr
from hoplon.scan.bypasses import BYPASSES, Bypass
from hoplon.scan.scanner import fails_policy, iter_files, scan_file, scan_paths, to_report
from hoplon.scan.types import FileRecord, ScanLimits, Verdict, verdict_of

if TYPE_CHECKING:
    from hoplon.scan.bom import build_bom, validate_bom
    from hoplon.scan.loading import safe_load
    from hoplon.scan.signing import VerifyResult, generate_keypair, sign_model, verify_model

__all__ = [
    "BYPASSES",
    "Bypass",
    "FileRecord",
    "ScanLimits",
    "Verdict",
    "VerifyResult",
    "build_bom",
    "fails_policy",
    "generate_keypair",
    "iter_files",
    "safe_load",
    "scan_file",
    "scan_paths",
    "sign_model",
    "to_report",
    "validate_bom",
    "verdict_of",
    "verify_model",
]

_LAZY = {
    "safe_load": "hoplon.scan.loading",
    "build_bom": "hoplon.scan.bom",
    "validate_bom": "hoplon.scan.bom",
    "generate_keypair": "hoplon.scan.signing",
    "sign_model": "hoplon.scan.signing",
    "verify_model": "hoplon.scan.signing",
    "VerifyResult": "hoplon.scan.signing",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
