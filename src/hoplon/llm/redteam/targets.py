"""Targets of a red-team run: built-in mock models, a Python function, or an OpenAI-compatible endpoint.

A target takes chat messages and returns a :class:`Reply`. Mocks make the runner testable offline:
``mock:echo`` (vulnerable: follows whatever the last message says, decoded), ``mock:leaky`` (gives its system
prompt away when asked), ``mock:refuse`` (always refuses). Add ``+guard`` (``mock:echo+guard``) to put
hoplon's firewall in front of any target.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hoplon.core.errors import InputError
from hoplon.llm.normalize import normalize

__all__ = ["Message", "Reply", "Target", "make_target"]

Message = Mapping[str, str]
_MARKER_RE = re.compile(r"\bhpl-[0-9a-f]{8}\b", re.I)
_TOOL_RE = re.compile(r"\bcall (?:the )?([a-z_]+) tool\b")
_ASKS_PROMPT = re.compile(r"instructions|system prompt|text above|repeat|configuration|first line")
REFUSAL = "I'm sorry, but I can't help with that."


@dataclass(frozen=True, slots=True)
class Reply:
    text: str
    tool_calls: tuple[str, ...] = ()


class Target(Protocol):
    name: str

    def __call__(self, messages: Sequence[Message]) -> Reply: ...


def _readings(text: str) -> list[str]:
    norm = normalize(text)
    return [norm.text, *(v.text for v in norm.views)]


@dataclass
class EchoTarget:
    """A model with no defences: it obeys the last user message, after decoding any obfuscation."""

    name: str = "mock:echo"

    def __call__(self, messages: Sequence[Message]) -> Reply:
        readings = _readings(messages[-1].get("content", ""))
        joined = " ".join(readings)
        markers = _MARKER_RE.findall(joined)
        tools = tuple(dict.fromkeys(_TOOL_RE.findall(joined)))
        if "![" in joined:
            images = re.findall(r"!\[[^\]]*\]\([^)]*\)", messages[-1].get("content", "") + " " + joined)
            return Reply(" ".join(["Here you go.", *images[:1]]), tools)
        if markers:
            return Reply(markers[0].upper(), tools)
        return Reply("Sure. " + readings[-1][:200], tools)


@dataclass
class LeakyTarget:
    """A model that recites its system prompt (with its canary) whenever asked about its instructions."""

    name: str = "mock:leaky"

    def __call__(self, messages: Sequence[Message]) -> Reply:
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
        asked = any(_ASKS_PROMPT.search(r) for r in _readings(messages[-1].get("content", "")))
        if asked and system:
            return Reply("Of course! My instructions are: " + system)
        return Reply("I can help with questions about Acme products.")


@dataclass
class RefuseTarget:
    """A model that refuses everything."""

    name: str = "mock:refuse"

    def __call__(self, messages: Sequence[Message]) -> Reply:
        return Reply(REFUSAL)


@dataclass
class FunctionTarget:
    """``python:module:function``: the function takes the message list and returns a string or a dict with
    ``text`` and optional ``tool_calls``."""

    fn: Callable[[list[dict[str, str]]], Any]
    name: str

    def __call__(self, messages: Sequence[Message]) -> Reply:
        out = self.fn([dict(m) for m in messages])
        if isinstance(out, str):
            return Reply(out)
        if isinstance(out, Mapping):
            return Reply(str(out.get("text", "")), tuple(str(t) for t in out.get("tool_calls", ())))
        raise InputError(f"Target {self.name} returned {type(out).__name__}; expected str or dict.")


@dataclass
class HttpTarget:
    """An OpenAI-compatible ``/v1`` base URL (chat completions). Only loopback unless ``allow_remote``."""

    url: str
    model: str = "default"
    timeout_s: float = 60.0
    api_key: str | None = None
    name: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.name or self.url

    def __call__(self, messages: Sequence[Message]) -> Reply:
        import httpx

        endpoint = self.url.rstrip("/") + "/chat/completions"
        headers = dict(self.headers)
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            resp = httpx.post(
                endpoint,
                json={"model": self.model, "messages": [dict(m) for m in messages]},
                headers=headers,
                timeout=self.timeout_s,
            )
            resp.raise_for_status()
            data = resp.json()
            msg = data["choices"][0]["message"]
        except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
            return Reply(f"[target error: {type(exc).__name__}]")
        tools = tuple(str(c.get("function", {}).get("name", "")) for c in msg.get("tool_calls") or ())
        return Reply(str(msg.get("content") or ""), tools)


@dataclass
class GuardedTarget:
    """Puts hoplon's firewall in front of another target: blocked inputs are refused, outputs are scanned."""

    inner: Target
    name: str = ""

    def __post_init__(self) -> None:
        from hoplon.llm.firewall import Firewall

        self.name = self.name or self.inner.name + "+guard"
        self._fw = Firewall()

    def __call__(self, messages: Sequence[Message]) -> Reply:
        from hoplon.llm.firewall import OutputContext

        for m in messages:
            if m.get("role") in ("user", "tool"):
                channel = "tool" if m.get("role") == "tool" else "user"
                if self._fw.scan_input(m.get("content", ""), channel=channel).verdict == "block":
                    return Reply(REFUSAL)
        reply = self.inner(messages)
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), None)
        out = self._fw.scan_output(reply.text, context=OutputContext(system_prompt=system))
        if out.verdict == "block":
            return Reply(REFUSAL)
        return Reply(out.text or "", reply.tool_calls)


def make_target(spec: str, *, allow_remote: bool = False, timeout_s: float = 60.0) -> Target:
    """Build a target from ``mock:echo|leaky|refuse``, ``python:module:function`` or an ``http(s)://…/v1``
    URL; a ``+guard`` suffix wraps it in hoplon's firewall."""
    guard = spec.endswith("+guard")
    base = spec.removesuffix("+guard")
    target: Target
    mocks: dict[str, Callable[[], Target]] = {
        "mock:echo": EchoTarget,
        "mock:leaky": LeakyTarget,
        "mock:refuse": RefuseTarget,
    }
    if base in mocks:
        target = mocks[base]()
    elif base.startswith("python:"):
        _, _, rest = base.partition(":")
        module_name, _, fn_name = rest.rpartition(":")
        if not module_name or not fn_name:
            raise InputError(f"A Python target is written python:module:function. Got {spec!r}.")
        try:
            fn = getattr(importlib.import_module(module_name), fn_name)
        except (ImportError, AttributeError) as exc:
            raise InputError(f"Cannot load target {spec!r}: {exc}") from None
        target = FunctionTarget(fn, name=base)
    elif base.startswith(("http://", "https://")):
        import urllib.parse

        host = urllib.parse.urlsplit(base).hostname or ""
        if not allow_remote and host not in ("127.0.0.1", "localhost", "::1"):
            raise InputError(f"Target {base} is not on loopback; pass --allow-remote to attack a remote endpoint.")
        target = HttpTarget(base, timeout_s=timeout_s)
    else:
        raise InputError(f"Unknown target {spec!r}: use mock:echo|leaky|refuse, python:module:function or a URL.")
    return GuardedTarget(target) if guard else target
