"""The OpenAI-compatible firewall proxy (needs the ``llm`` extra: starlette, uvicorn, httpx)."""

from hoplon.llm.proxy.app import create_app
from hoplon.llm.proxy.audit import AuditSink, HashChainedJsonl
from hoplon.llm.proxy.stream import StreamGuard

__all__ = ["AuditSink", "HashChainedJsonl", "StreamGuard", "create_app"]
