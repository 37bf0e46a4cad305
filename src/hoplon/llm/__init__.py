"""hoplon's LLM firewall: offline prompt-injection and leakage detection, an OpenAI-compatible proxy and a
red-team runner.

``import hoplon.llm`` is light (standard library only; no torch, numpy or onnxruntime): the semantic stage,
the proxy and the red-team runner are imported only when used.
"""

from hoplon.llm.firewall import EVASION_FLAGS, Firewall, OutputContext, ScanResult, SemanticScorer, Verdict
from hoplon.llm.ngram import NgramModel, default_model
from hoplon.llm.normalize import Normalized, View, normalize
from hoplon.llm.output import Canary, OutputHit, Pseudonymizer
from hoplon.llm.policy import InputPolicy, OutputPolicy, Policy, ProxyPolicy
from hoplon.llm.rules import Rule, RuleMatch, default_rules, load_rules

__all__ = [
    "EVASION_FLAGS",
    "Canary",
    "Firewall",
    "InputPolicy",
    "NgramModel",
    "Normalized",
    "OutputContext",
    "OutputHit",
    "OutputPolicy",
    "Policy",
    "ProxyPolicy",
    "Pseudonymizer",
    "Rule",
    "RuleMatch",
    "ScanResult",
    "SemanticScorer",
    "Verdict",
    "View",
    "default_model",
    "default_rules",
    "load_rules",
    "normalize",
]
