"""The OpenAI-compatible firewall proxy (needs the ``llm`` extra: starlette, uvicorn, httpx)."""

from hoplon.llm.proxy.app import create_app
from hoplon.llm.proxy.audit import AuditSink, HashChainedJsonl, LedgerSink, open_sink
from hoplon.llm.proxy.stream import StreamGuard

__all__ = ["AuditSink", "HashChainedJsonl", "LedgerSink", "StreamGuard", "create_app", "open_sink"]
