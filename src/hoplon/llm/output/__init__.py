"""Output scanners: secrets, personal data, system-prompt leakage, exfiltration through rendering."""

from hoplon.llm.output.exfil import scan_exfil
from hoplon.llm.output.leakage import Canary, scan_leakage
from hoplon.llm.output.pii import Pseudonymizer, scan_pii
from hoplon.llm.output.secrets import scan_secrets
from hoplon.llm.output.types import OutputHit

__all__ = ["Canary", "OutputHit", "Pseudonymizer", "scan_exfil", "scan_leakage", "scan_pii", "scan_secrets"]
