"""An OpenAI-compatible reverse proxy (``/v1/chat/completions``, with streaming) that puts the firewall
between clients and a model server.

Every input message is scanned by channel (``user`` for user turns, ``tool`` for tool results; a message may
name its channel with a ``channel`` field, e.g. ``retrieved``, which is removed before forwarding); system,
developer and assistant turns are trusted. A blocked request gets a normal chat completion whose
``finish_reason`` is ``content_filter``, so unmodified clients keep working. Outputs are scanned whole, or
stream-safe with :class:`~hoplon.llm.proxy.stream.StreamGuard`. Limits (body size, message count, prompt
and completion tokens) are enforced, malformed requests get a clear 400, and every request leaves an audit
record (hashes, verdicts, timings; prompt text only if the policy says so).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from hoplon.llm.firewall import Firewall, OutputContext, ScanResult
from hoplon.llm.output.leakage import Canary
from hoplon.llm.output.pii import Pseudonymizer
from hoplon.llm.policy import CHANNELS, Policy
from hoplon.llm.proxy.audit import AuditSink, open_sink
from hoplon.llm.proxy.stream import StreamGuard

__all__ = ["create_app"]

log = logging.getLogger(__name__)
_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
_TRUSTED = {"system", "developer", "assistant"}
_CHANNEL_OF_ROLE = {"user": "user", "tool": "tool", "function": "tool"}
_BLOCK_TEXT = "[hoplon] This request was blocked by the LLM firewall ({why})."


class _Reject(Exception):
    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.code, "param": None}}
        return JSONResponse(body, status_code=self.status)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def _content_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, Mapping) or "type" not in part:
                raise _Reject(400, "Each content part must be an object with a 'type'.", "invalid_content")
            if part["type"] == "text":
                if not isinstance(part.get("text"), str):
                    raise _Reject(400, "A text content part needs a string 'text'.", "invalid_content")
                parts.append(part["text"])
        return "\n".join(parts)
    raise _Reject(400, "A message's 'content' must be a string, a list of parts or null.", "invalid_content")


def _validate(payload: Any, policy: Policy) -> list[dict[str, Any]]:
    if not isinstance(payload, dict):
        raise _Reject(400, "The request body must be a JSON object.", "invalid_body")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Reject(400, "'messages' must be a non-empty array.", "invalid_messages")
    if len(messages) > policy.proxy.max_messages:
        raise _Reject(400, f"Too many messages ({len(messages)} > {policy.proxy.max_messages}).", "too_many_messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            raise _Reject(400, f"messages[{i}] needs a 'role' among {', '.join(sorted(_ROLES))}.", "invalid_role")
    if not isinstance(payload.get("model", ""), str):
        raise _Reject(400, "'model' must be a string.", "invalid_model")
    n = payload.get("n", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise _Reject(400, "'n' must be a positive integer.", "invalid_n")
    if n > 1 and payload.get("stream"):
        # The stream guard scans one choice; refuse rather than pass other choices through unscanned.
        raise _Reject(
            400, "Streaming with n > 1 is not supported by the proxy; use n = 1 or stream = false.", "invalid_n"
        )
    return messages


def _limit_tokens(payload: dict[str, Any], policy: Policy, prompt_chars: int) -> None:
    # A cheap, conservative estimate (about four characters per token) keeps the limit independent of the
    # upstream's tokenizer.
    if prompt_chars // 4 > policy.proxy.max_prompt_tokens:
        raise _Reject(
            400,
            f"The prompt is about {prompt_chars // 4} tokens; the limit is {policy.proxy.max_prompt_tokens}.",
            "context_length_exceeded",
        )
    key = "max_completion_tokens" if "max_completion_tokens" in payload else "max_tokens"
    asked = payload.get(key)
    if asked is not None and (not isinstance(asked, int) or isinstance(asked, bool) or asked < 1):
        raise _Reject(400, f"'{key}' must be a positive integer.", "invalid_max_tokens")
    payload[key] = min(asked or policy.proxy.max_tokens, policy.proxy.max_tokens)


def _gather_call(calls: dict[int, dict[str, Any]], part: Any) -> None:
    """Merge one streamed tool-call fragment (OpenAI's delta format) into the calls gathered so far."""
    if not isinstance(part, dict):
        return
    index = part.get("index", 0) if isinstance(part.get("index", 0), int) else 0
    call = calls.setdefault(
        index, {"index": index, "id": None, "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if part.get("id"):
        call["id"] = part["id"]
    function = part.get("function") or {}
    if isinstance(function.get("name"), str):
        call["function"]["name"] += function["name"]
    if isinstance(function.get("arguments"), str):
        call["function"]["arguments"] += function["arguments"]


def _completion(model: str, rid: str, text: str, finish: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "hoplon": dict(extra),
    }


def _chunk(model: str, rid: str, delta: Mapping[str, Any], finish: str | None) -> bytes:
    body = {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": dict(delta), "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _verdict_summary(result: ScanResult) -> dict[str, Any]:
    rules = sorted({str(getattr(m, "rule_id", None) or getattr(m, "kind", "")) for m in result.matches})
    return {"verdict": result.verdict, "score": round(result.score, 4), "rules": rules, "flags": list(result.flags)}


def create_app(
    *,
    upstream: str,
    policy: Policy | None = None,
    firewall: Firewall | None = None,
    audit: AuditSink | None = None,
    on_alert: Callable[[str, Mapping[str, Any]], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Starlette:
    """Build the proxy's ASGI app.

    Args:
        upstream: the model server's OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8000/v1``.
        policy: the firewall policy (the firewall's own when ``None``).
        firewall: a ready firewall (built from ``policy`` when ``None``).
        audit: where audit records go (by default :func:`open_sink` of ``policy.proxy.audit_path``: a ledger URL
            or a hash-chained JSONL file).
        on_alert: called with ``(kind, details)`` when the upstream fails or a scanner errors.
        transport: an httpx transport for the upstream (tests).
    """
    fw = firewall or Firewall(policy)
    pol = policy or fw.policy
    sink = audit or open_sink(pol.proxy.audit_path)
    base = upstream.rstrip("/")
    client = httpx.AsyncClient(timeout=pol.proxy.upstream_timeout_s, transport=transport)

    def alert(kind: str, details: Mapping[str, Any]) -> None:
        log.warning("hoplon llm proxy alert: %s %s", kind, dict(details))
        if on_alert is not None:
            on_alert(kind, details)

    def record(rec: dict[str, Any]) -> None:
        try:
            sink.append(rec)
        except OSError as exc:  # an audit failure must be visible, never silent
            alert("audit_write_failed", {"error": str(exc)})

    def scan_in(text: str, channel: str, rec: dict[str, Any]) -> ScanResult | None:
        try:
            return fw.scan_input(text, channel=channel)
        except Exception as exc:  # the gateway boundary: apply the declared fail mode
            alert("scanner_error", {"error": f"{type(exc).__name__}: {exc}", "fail_mode": pol.proxy.fail_mode})
            rec.setdefault("alerts", []).append("scanner_error")
            return None

    async def chat(request: Request) -> Response:
        t0 = time.perf_counter()
        rid = "chatcmpl-hpl" + uuid.uuid4().hex[:20]
        rec: dict[str, Any] = {"request_id": rid, "client": request.client.host if request.client else None}
        try:
            declared = int(request.headers.get("content-length") or 0)
            if declared > pol.proxy.max_request_bytes:
                raise _Reject(413, f"Request body over {pol.proxy.max_request_bytes} bytes.", "request_too_large")
            body = await request.body()
            if len(body) > pol.proxy.max_request_bytes:
                raise _Reject(413, f"Request body over {pol.proxy.max_request_bytes} bytes.", "request_too_large")
            try:
                payload = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise _Reject(400, f"The request body is not valid JSON: {exc}", "invalid_json") from None
            messages = _validate(payload, pol)
            texts = [_content_text(m) for m in messages]
            _limit_tokens(payload, pol, sum(len(t) for t in texts))
        except _Reject as rej:
            record({**rec, "status": rej.status, "error": rej.code})
            return rej.response()
        model = str(payload.get("model", ""))
        stream = bool(payload.get("stream"))
        rec.update({"model": model, "stream": stream, "messages": []})
        t_scan = time.perf_counter()
        blocked: list[str] = []
        for i, (m, text) in enumerate(zip(messages, texts, strict=True)):
            channel = str(m.pop("channel", "") or _CHANNEL_OF_ROLE.get(m["role"], "system"))
            entry: dict[str, Any] = {"index": i, "role": m["role"], "channel": channel, "sha256": _sha(text)}
            if pol.proxy.log_prompts:
                entry["text"] = text
            if channel not in CHANNELS:
                bad = _Reject(400, f"messages[{i}].channel must be one of {', '.join(CHANNELS)}.", "invalid_channel")
                record({**rec, "status": 400, "error": bad.code})
                return bad.response()
            if m["role"] not in _TRUSTED:
                if fw.semantic is not None:  # a model call: keep it off the event loop
                    result = await run_in_threadpool(scan_in, text, channel, rec)
                else:
                    result = scan_in(text, channel, rec)
                if result is None:
                    entry["verdict"] = "error"
                    if pol.proxy.fail_mode == "closed":
                        blocked.append(f"messages[{i}]: scanner error")
                else:
                    entry.update(_verdict_summary(result))
                    if result.verdict == "block":
                        blocked.append(f"messages[{i}] ({channel}): {', '.join(entry['rules']) or 'detector score'}")
            rec["messages"].append(entry)
        rec["timings_ms"] = {"input_scan": round((time.perf_counter() - t_scan) * 1e3, 3)}
        system_prompt = "\n".join(
            t for m, t in zip(messages, texts, strict=True) if m["role"] in ("system", "developer")
        )
        if blocked:
            why = "; ".join(blocked)
            rec.update({"status": 200, "verdict": "block", "reason": why})
            rec["timings_ms"]["total"] = round((time.perf_counter() - t0) * 1e3, 3)
            record(rec)
            text = _BLOCK_TEXT.format(why=why)
            extra = {"verdict": "block", "reason": why, "request_id": rid}
            if stream:

                async def refusal() -> AsyncIterator[bytes]:
                    yield _chunk(model, rid, {"role": "assistant", "content": text}, None)
                    yield _chunk(model, rid, {}, "content_filter")
                    yield b"data: [DONE]\n\n"

                return StreamingResponse(
                    refusal(), media_type="text/event-stream", headers={"x-hoplon-verdict": "block"}
                )
            return JSONResponse(
                _completion(model, rid, text, "content_filter", extra), headers={"x-hoplon-verdict": "block"}
            )
        canary: str | None = None
        if pol.proxy.canary:
            for m in messages:
                if m["role"] == "system" and isinstance(m.get("content"), str):
                    c = Canary.new()
                    canary = c.token
                    m["content"] = m["content"] + "\n" + c.sentence()
                    break
        ctx = OutputContext(system_prompt=system_prompt or None, canary=canary, pseudonymizer=Pseudonymizer())
        headers = {"content-type": "application/json"}
        for name in ("authorization", "openai-organization", "openai-project"):
            if name in request.headers:
                headers[name] = request.headers[name]
        upstream_req = client.build_request("POST", base + "/chat/completions", json=payload, headers=headers)
        t_up = time.perf_counter()
        try:
            resp = await client.send(upstream_req, stream=True)
        except httpx.TimeoutException as exc:
            alert("upstream_timeout", {"upstream": base, "error": str(exc)})
            record({**rec, "status": 504, "error": "upstream_timeout", "alerts": ["upstream_timeout"]})
            return _Reject(504, "The upstream model server timed out.", "upstream_timeout", "api_error").response()
        except httpx.HTTPError as exc:
            alert("upstream_unavailable", {"upstream": base, "error": f"{type(exc).__name__}: {exc}"})
            record({**rec, "status": 502, "error": "upstream_unavailable", "alerts": ["upstream_unavailable"]})
            return _Reject(
                502, "The upstream model server is unavailable.", "upstream_unavailable", "api_error"
            ).response()
        if resp.status_code != 200 or not stream:
            try:
                raw = await resp.aread()
            except httpx.HTTPError as exc:
                alert("upstream_unavailable", {"upstream": base, "error": str(exc)})
                record({**rec, "status": 502, "error": "upstream_read_failed"})
                return _Reject(
                    502, "The upstream response could not be read.", "upstream_unavailable", "api_error"
                ).response()
            finally:
                await resp.aclose()
            rec["timings_ms"]["upstream"] = round((time.perf_counter() - t_up) * 1e3, 3)
            if resp.status_code != 200:
                record({**rec, "status": resp.status_code, "error": "upstream_status"})
                return Response(raw, status_code=resp.status_code, media_type=resp.headers.get("content-type"))
            return finish_plain(raw, rec, ctx, t0)
        return StreamingResponse(stream_out(resp, rec, ctx, model, t0, t_up), media_type="text/event-stream")

    def finish_plain(raw: bytes, rec: dict[str, Any], ctx: OutputContext, t0: float) -> Response:
        try:
            data = json.loads(raw)
            choices = data["choices"]
        except (ValueError, KeyError, TypeError):
            alert("upstream_bad_response", {"bytes": len(raw)})
            record({**rec, "status": 502, "error": "upstream_bad_response"})
            return _Reject(
                502, "The upstream returned a malformed completion.", "upstream_bad_response", "api_error"
            ).response()
        t_out = time.perf_counter()
        outs = []
        for choice in choices:
            msg = choice.get("message") or {}
            for call in msg.get("tool_calls") or []:
                arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
                if isinstance(arguments, str):
                    verdict = fw.scan_output(arguments, context=ctx)
                    outs.append({"index": choice.get("index", 0), "tool_call": True, **_verdict_summary(verdict)})
                    if verdict.verdict == "block":  # a tool call can exfiltrate as well as text can
                        kinds = ", ".join(sorted({getattr(h, "kind", "") for h in verdict.matches}))
                        msg.pop("tool_calls", None)
                        msg["content"] = _BLOCK_TEXT.format(why=f"tool call: {kinds}")
                        choice["finish_reason"] = "content_filter"
                        break
            content = msg.get("content")
            if not isinstance(content, str) or choice.get("finish_reason") == "content_filter":
                continue
            result = fw.scan_output(content, context=ctx)
            outs.append({"index": choice.get("index", 0), "sha256": _sha(content), **_verdict_summary(result)})
            if result.verdict == "block":
                kinds = ", ".join(sorted({getattr(h, "kind", "") for h in result.matches}))
                msg["content"] = _BLOCK_TEXT.format(why=f"output: {kinds}")
                choice["finish_reason"] = "content_filter"
            elif result.text is not None:
                msg["content"] = result.text
        rec["timings_ms"]["output_scan"] = round((time.perf_counter() - t_out) * 1e3, 3)
        rec["timings_ms"]["total"] = round((time.perf_counter() - t0) * 1e3, 3)
        rec.update({"status": 200, "outputs": outs})
        record(rec)
        data["hoplon"] = {"request_id": rec["request_id"], "outputs": outs}
        return JSONResponse(data)

    def _scan_calls(calls: dict[int, dict[str, Any]], ctx: OutputContext) -> str:
        """Scan the gathered tool-call arguments; return the kinds found when one must be blocked."""
        for call in calls.values():
            arguments = call["function"]["arguments"]
            if arguments:
                verdict = fw.scan_output(arguments, context=ctx)
                if verdict.verdict == "block":
                    return ", ".join(sorted({getattr(h, "kind", "") for h in verdict.matches}))
        return ""

    async def stream_out(
        resp: httpx.Response, rec: dict[str, Any], ctx: OutputContext, model: str, t0: float, t_up: float
    ) -> AsyncIterator[bytes]:
        guard = StreamGuard(fw, ctx)
        rid = rec["request_id"]
        done = False
        calls: dict[int, dict[str, Any]] = {}  # streamed tool calls, held back until they can be scanned whole
        blocked_call = ""
        try:
            async for line in resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                    choice = chunk["choices"][0]
                except (ValueError, KeyError, IndexError, TypeError):
                    continue
                rid = chunk.get("id", rid)
                delta = dict(choice.get("delta") or {})
                finish = choice.get("finish_reason")
                piece = delta.pop("content", None)
                for part in delta.pop("tool_calls", None) or []:
                    _gather_call(calls, part)
                released = guard.feed(piece) if isinstance(piece, str) else ""
                if guard.blocked:
                    break
                if finish is not None:
                    released += guard.finish()
                    if guard.blocked:
                        break
                    blocked_call = _scan_calls(calls, ctx)
                    if blocked_call:
                        break
                    if calls:
                        delta["tool_calls"] = [calls[i] for i in sorted(calls)]
                if released or delta or finish is not None:
                    if released:
                        delta["content"] = released
                    yield _chunk(model, rid, delta, finish)
                if finish is not None:
                    done = True
            if not guard.blocked and not done and not blocked_call:
                rest = guard.finish()
                blocked_call = "" if guard.blocked else _scan_calls(calls, ctx)
                if not guard.blocked and not blocked_call:
                    tail: dict[str, Any] = {"content": rest} if rest else {}
                    if calls:
                        tail["tool_calls"] = [calls[i] for i in sorted(calls)]
                    yield _chunk(model, rid, tail, "stop")
            if blocked_call:
                yield _chunk(
                    model,
                    rid,
                    {"content": "\n" + _BLOCK_TEXT.format(why=f"tool call: {blocked_call}")},
                    "content_filter",
                )
            elif guard.blocked:
                kinds = (
                    ", ".join(sorted({getattr(h, "kind", "") for h in guard.result.matches})) if guard.result else ""
                )
                yield _chunk(
                    model, rid, {"content": "\n" + _BLOCK_TEXT.format(why=f"output: {kinds}")}, "content_filter"
                )
            yield b"data: [DONE]\n\n"
        except httpx.HTTPError as exc:
            alert("upstream_stream_failed", {"error": f"{type(exc).__name__}: {exc}"})
            rec.setdefault("alerts", []).append("upstream_stream_failed")
            yield _chunk(model, rid, {}, "error")
            yield b"data: [DONE]\n\n"
        finally:
            await resp.aclose()
            out = guard.result
            rec["timings_ms"]["upstream_and_output"] = round((time.perf_counter() - t_up) * 1e3, 3)
            rec["timings_ms"]["total"] = round((time.perf_counter() - t0) * 1e3, 3)
            rec.update(
                {
                    "status": 200,
                    "outputs": [{"index": 0, "sha256": _sha(guard.text), **(_verdict_summary(out) if out else {})}],
                }
            )
            record(rec)

    async def models(request: Request) -> Response:
        try:
            resp = await client.get(
                base + "/models", headers={k: v for k, v in request.headers.items() if k == "authorization"}
            )
        except httpx.HTTPError as exc:
            alert("upstream_unavailable", {"upstream": base, "error": str(exc)})
            return _Reject(
                502, "The upstream model server is unavailable.", "upstream_unavailable", "api_error"
            ).response()
        return Response(resp.content, status_code=resp.status_code, media_type=resp.headers.get("content-type"))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "upstream": base})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
