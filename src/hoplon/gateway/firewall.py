"""`Firewall`: the model firewall as raw ASGI middleware; the same chain serves all three forms.

admission → authentication → authorisation → rate limits → input validation → model call (timeout,
concurrency cap) → output hardening → audit record → metrics. Each stage has ``mode`` (enforce: deny;
shadow: record what it would have denied and go on; off: skip) and ``on_error`` (a failure inside the stage,
such as Redis being down, lets the request through or refuses it with 503; either way an alert metric and
log line are raised). Raw ASGI rather than Starlette's ``BaseHTTPMiddleware``, which costs about 1 ms of CPU
per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import secrets
import signal
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hoplon.core.errors import HoplonError
from hoplon.gateway.admin import AdminApi
from hoplon.gateway.auth import AuthFailure, has_scope
from hoplon.gateway.config import GatewayConfig, load_config
from hoplon.gateway.deadlines import ConcurrencyCap, Deadline, Deadlines
from hoplon.gateway.metrics import STAGE_IDS, GatewayMetrics
from hoplon.gateway.protocol import (
    BadRequest,
    Hardening,
    ParsedInput,
    dump_json,
    harden_response,
    load_json,
    parse_inputs,
    read_body,
)
from hoplon.gateway.ratelimit import Limited
from hoplon.gateway.runtime import Deny, RequestContext, Runtime

if TYPE_CHECKING:
    from hoplon.gateway.detectors.engine import Action
    from hoplon.gateway.detectors.stage import DetectStage
    from hoplon.gateway.detectors.types import Alarm
    from hoplon.ledger import Ledger

__all__ = ["Firewall"]

log = logging.getLogger("hoplon.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

_JSON = (b"content-type", b"application/json")
_ADMISSION, _AUTHENTICATION, _AUTHORISATION, _RATE_LIMITS, _VALIDATION, _MODEL, _OUTPUT, _AUDIT = (
    STAGE_IDS[s]
    for s in ("admission", "authentication", "authorisation", "rate_limits", "validation", "model", "output", "audit")
)
_PID = os.getpid()
_OPERATIONAL = {
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/metrics": "/metrics",
    "/v2/health/live": "/healthz",
    "/v2/health/ready": "/readyz",
}


def _round_ms(seconds: float) -> float:
    """``round(seconds * 1000, 3)``, the same float, without round's decimal conversion (~3k instructions)
    where the microseconds lie clear of a half: their nearest integer k is then the exact value's too (the
    product's error is below 2^-12 under 2^40), and k / 1000 is the float nearest k·10^-3, as round gives."""
    ms = seconds * 1000
    us = ms * 1000
    k = round(us)
    if abs(us - k) < 0.499 and abs(us) < 1099511627776.0:  # 2^40
        return k / 1000
    return round(ms, 3)


class Firewall:
    """Wrap an ASGI model app (``app``) with the firewall chain.

    Args:
        app: the model app: yours (middleware form), hoplon's in-process v2 server, or the sidecar proxy.
        config: a :class:`GatewayConfig`, a YAML path (enables hot reload), or ``None`` for the safe defaults.
        ledger: an open :class:`hoplon.ledger.Ledger` to record into (default: opened from the config).
        model_digests: ``sha256:`` digests of served model files, by model name, for the audit record.
        state_dir: overrides the config's ``server.state_dir``.
        adjust: applied to every loaded config, at start and on reload (``hoplon serve --model`` adds its model).
    """

    def __init__(
        self,
        app: ASGIApp,
        config: GatewayConfig | str | Path | None = None,
        *,
        ledger: Ledger | None = None,
        model_digests: dict[str, str] | None = None,
        state_dir: Path | None = None,
        adjust: Callable[[GatewayConfig], GatewayConfig] | None = None,
    ) -> None:
        self.app = app
        self.config_path = None if isinstance(config, GatewayConfig) or config is None else Path(config)
        self._state_dir = state_dir
        self._adjust = adjust or (lambda c: c)
        cfg = self._adjust(config if isinstance(config, GatewayConfig) else load_config(config, state_dir=state_dir))
        self.metrics = GatewayMetrics()
        self._storages: dict[str, Any] = {}
        self._digests = dict(model_digests or {})
        self.runtime = Runtime(cfg, self._storages, self._digests)
        self.admin = AdminApi(cfg.state_dir)  # /admin/* and the incident quarantine list
        self._config_mtime = self._mtime()
        self.ledger = ledger if ledger is not None or cfg.audit.mode == "off" else self._open_ledger(cfg)
        self._owns_ledger = ledger is None and self.ledger is not None
        if self.ledger is not None:
            opened = self.ledger
            self.metrics.track_checkpoint_age(lambda: time.time() - opened.last_checkpoint_ts)
        self._cap: ConcurrencyCap | None = None  # the model calls' (made on first use, in the serving loop)
        self._guard_tripped = False  # what the auth-guard gauge shows
        self._deadlines = Deadlines()
        # Request ids: a random per-process prefix and a counter (os.urandom per request costs more).
        self._rid_prefix = secrets.token_hex(11)
        self._rid_counter = itertools.count()
        self._background: asyncio.Task[None] | None = None
        self.last_reload_error: str | None = None
        # The detect stage's state lives for the process (a config reload keeps it and applies its settings).
        self.detect: DetectStage | None = None
        if cfg.detect.mode != "off":
            from hoplon.gateway.detectors.stage import DetectStage

            self.detect = DetectStage(cfg.detect.spec, on_alarm=self._on_alarm)

    @property
    def config(self) -> GatewayConfig:
        return self.runtime.config

    def _open_ledger(self, cfg: GatewayConfig) -> Ledger:
        from hoplon.ledger import Ledger

        audit = cfg.audit

        def on_error(exc: BaseException) -> None:
            self.metrics.audit_write_errors.inc()

        return Ledger.open(
            audit.ledger,
            writer=audit.writer,
            signing_key=audit.signing_key,
            durable=audit.durable,
            checkpoint_every=audit.checkpoint_every,
            checkpoint_interval_s=audit.checkpoint_interval_s,
            on_error=on_error,
        )

    def _on_alarm(self, alarm: Alarm, action: Action) -> None:
        """A detector alarm becomes a ledger event (evidence for ``hoplon incident history``)."""
        if self.ledger is None:
            return
        record = {
            "detector": alarm.detector,
            "score": alarm.score,
            "threshold": alarm.threshold,
            "at_query": alarm.at_query,
            "action": action,
            "mode": self.config.detect.mode,
        }
        try:
            self.ledger.submit(record, kind="gateway.alarm", identity=alarm.identity)
        except Exception as exc:  # the gateway boundary: a ledger failure is an alert, never a crash
            self.metrics.audit_write_errors.inc()
            log.error("ALERT alarm record for %s not written: %s", alarm.identity, exc)

    def close(self) -> None:
        if self.detect is not None:
            self.detect.close()
        if self._background is not None:
            self._background.cancel()
        if self._owns_ledger and self.ledger is not None:
            self.ledger.close()

    # ------------------------------------------------------------------ reload

    def _mtime(self) -> float:
        try:
            return self.config_path.stat().st_mtime if self.config_path else 0.0
        except OSError:
            return 0.0

    def reload(self) -> bool:
        """Re-read the config file; swap it in atomically, or keep the old one and say why."""
        if self.config_path is None:
            return False
        self._config_mtime = self._mtime()
        try:
            cfg = self._adjust(load_config(self.config_path, state_dir=self._state_dir))
            runtime = Runtime(cfg, self._storages, self._digests)
            if self.detect is not None:  # new detector settings from the next request; state kept where it fits
                self.detect.reconfigure(cfg.detect.spec)
            elif cfg.detect.mode != "off":
                from hoplon.gateway.detectors.stage import DetectStage

                self.detect = DetectStage(cfg.detect.spec, on_alarm=self._on_alarm)
        except (HoplonError, OSError) as exc:
            self.last_reload_error = str(exc)
            self.metrics.config_reloads.labels("rejected").inc()
            log.error("config reload refused, keeping config %s: %s", self.config.hash[:19], exc)
            return False
        self.runtime = runtime
        self.last_reload_error = None
        self.metrics.config_reloads.labels("applied").inc()
        log.warning("config reloaded: %s", cfg.hash[:19])
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if self._mtime() != self._config_mtime:
                self.reload()

    def _start_background(self) -> None:
        if self._background is not None or self.config_path is None:
            return
        loop = asyncio.get_running_loop()
        self._background = loop.create_task(self._watch())
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, self.reload)

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._background is None and self.config_path is not None:
            self._start_background()
        path = scope["path"]
        if path in _OPERATIONAL:
            await self._operational(_OPERATIONAL[path], send)
            return
        if path.startswith("/admin/"):
            await self.admin.handle(self, scope, receive, send)
            return
        rt = self.runtime
        model, is_infer = rt.model_of(path)
        rid = f"{self._rid_prefix}{next(self._rid_counter):010x}"
        ctx = RequestContext(rid, rt.source_of(scope), scope["method"], path, model, is_infer)
        deadline = self._deadlines.enter(rt.config.admission.request_timeout_s, "request")
        try:
            status, headers, body = await self._chain(rt, ctx, scope, receive, deadline)
        except asyncio.CancelledError:
            if not deadline.timed_out():
                raise
            ctx.denial = Deny(504, "request_timeout", "The request took too long.")
            status, headers, body = self._deny_response(ctx, ctx.denial)
        except Deny as denial:
            ctx.denial = denial
            status, headers, body = self._deny_response(ctx, denial)
        finally:
            self._deadlines.leave(deadline)
        if rt.config.audit.mode != "off" and self.ledger is not None:
            failed = await self._audit(rt, ctx, status)
            if failed and rt.config.audit.on_error == "fail_closed" and rt.config.audit.mode == "enforce":
                ctx.denial = Deny(503, "audit_unavailable", "The audit log cannot be written; refusing to serve.")
                status, headers, body = self._deny_response(ctx, ctx.denial)
        headers.append((b"x-request-id", ctx.request_id.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        metrics = self.metrics
        label = model if model in rt.versions else "-"
        metrics.request(label, rt.versions.get(model or "", "-"), "deny" if ctx.denial else "allow", status)
        if metrics.due(ctx.t0):
            metrics.fold()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass lifespan to the app; on shutdown, flush the ledger and sign its final checkpoint."""

        async def on_send(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                await asyncio.to_thread(self.close)
            await send(message)

        try:
            await self.app(scope, receive, on_send)
        except Exception:  # an app without lifespan support: answer the protocol ourselves
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await asyncio.to_thread(self.close)
            await send({"type": "lifespan.shutdown.complete"})

    async def _chain(
        self, rt: Runtime, ctx: RequestContext, scope: Scope, receive: Receive, deadline: Deadline
    ) -> tuple[int, Headers, bytes]:
        cfg = rt.config
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        t = time.perf_counter()
        ctx.body = await self._admit(rt, ctx, headers, receive)
        ctx.stages.setdefault("admission", "pass" if rt.config.admission.mode != "off" else "off")
        self.metrics.stage_times.pending.append((_ADMISSION, time.perf_counter() - t))
        if rt.enforced:
            self._enforce_stages(rt, ctx, headers)
        else:
            self._run_stage(rt, ctx, "authentication", self._authenticate, rt, ctx, headers)
            self._run_stage(rt, ctx, "authorisation", self._authorise, ctx)
            self._quarantine(ctx)
            if ctx.is_infer and ctx.model is not None:
                batch = ctx.parsed.batch if ctx.parsed is not None else 1
                model = ctx.model
                self._run_stage(rt, ctx, "rate_limits", self._limit, rt, ctx, model, batch)
                self._run_stage(rt, ctx, "validation", self._validate, rt, ctx, model)
                if self.detect is not None:
                    self._run_stage(rt, ctx, "detect", self._detect, self.detect, ctx)
        scope["hoplon.identity"], scope["hoplon.served"] = ctx.identity.subject, ctx.served
        status, out_headers, body = await self._call_model(cfg, scope, receive, ctx, deadline)
        if ctx.is_infer and status == 200:
            if self.detect is not None and ctx.parsed is not None and cfg.detect.mode != "off":
                self._observe(rt, self.detect, ctx.identity.subject, ctx.parsed, body)
            body = self._harden(rt, ctx, body)
            out_headers = [(k, v) for k, v in out_headers if k.lower() != b"content-length"]
            out_headers.append((b"content-length", str(len(body)).encode()))
        return status, out_headers, body

    def _quarantine(self, ctx: RequestContext) -> None:
        quarantined = self.admin.quarantine.refusal(ctx.identity.subject)
        if quarantined is not None:
            ctx.stages["quarantine"] = f"deny:{quarantined[1]}"
            raise Deny(*quarantined)

    def _enforce_stages(self, rt: Runtime, ctx: RequestContext, headers: dict[bytes, bytes]) -> None:
        """Authentication to validation (and the quarantine list) when each of these stages enforces and fails
        closed (``rt.enforced``): what ``_run_stage`` does for them, in one straight line. A stage's time runs
        from the previous one's end; a refusal or failure is recorded by ``_stage_denied`` / ``_stage_broken``."""
        stages = ctx.stages
        pending = self.metrics.stage_times.pending
        perf = time.perf_counter
        name = "authentication"
        t = perf()
        try:
            self._authenticate(rt, ctx, headers)
            now = perf()
            pending.append((_AUTHENTICATION, now - t))
            stages["authentication"] = "pass"
            name, t = "authorisation", now
            model = ctx.model
            self._authorise(ctx)  # the scope rule lives in one place (``has_scope``), for both paths
            now = perf()
            pending.append((_AUTHORISATION, now - t))
            stages["authorisation"] = "pass"
        except Deny as denial:
            self._stage_denied(ctx, name, t, denial)
            raise
        except Exception as exc:  # the gateway boundary, as in _run_stage
            raise self._stage_broken(ctx, name, t, exc) from None
        self._quarantine(ctx)
        if not ctx.is_infer or model is None:
            return
        parsed = ctx.parsed
        name = "rate_limits"
        t = perf()
        try:
            self._limit(rt, ctx, model, 1 if parsed is None else parsed.batch)  # the generic path's check
            now = perf()
            pending.append((_RATE_LIMITS, now - t))
            stages["rate_limits"] = "pass"
            name, t = "validation", now
            if parsed is not None:
                self._validate(rt, ctx, model)
            pending.append((_VALIDATION, perf() - t))
            stages["validation"] = "pass"
        except Deny as denial:
            self._stage_denied(ctx, name, t, denial)
            raise
        except Exception as exc:  # the gateway boundary, as above
            raise self._stage_broken(ctx, name, t, exc) from None
        if self.detect is not None:
            self._run_stage(rt, ctx, "detect", self._detect, self.detect, ctx)

    def _stage_denied(self, ctx: RequestContext, name: str, t: float, denial: Deny) -> None:
        """An enforcing stage ``name`` (begun at ``t``) refuses the request: its record and time."""
        self.metrics.stage_times.pending.append((STAGE_IDS[name], time.perf_counter() - t))
        ctx.stages[name] = f"deny:{denial.reason}"

    def _stage_broken(self, ctx: RequestContext, name: str, t: float, exc: Exception) -> Deny:
        """A fail-closed stage ``name`` (begun at ``t``) failed: the alert, its record and time, and the 503."""
        self.metrics.stage_errors.labels(name, "fail_closed").inc()
        log.error("ALERT stage %s failed (%s): %s: %s", name, "fail_closed", type(exc).__name__, exc)
        ctx.stages[name] = "error:closed"
        self.metrics.stage_times.pending.append((STAGE_IDS[name], time.perf_counter() - t))
        return Deny(503, f"{name}_unavailable", f"The {name} stage is unavailable.")

    def _run_stage(self, rt: Runtime, ctx: RequestContext, name: str, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` as stage ``name`` (its arguments passed, not closed over: no closure per call)."""
        stage = rt.config.stage(name)
        if stage.mode == "off":
            ctx.stages[name] = "off"
            return
        t = time.perf_counter()
        try:
            fn(*args)
        except Deny as denial:
            if stage.mode == "shadow":
                ctx.stages[name] = f"shadow:{denial.reason}"
                return
            ctx.stages[name] = f"deny:{denial.reason}"
            raise
        except Exception as exc:  # the gateway boundary: a broken dependency must not crash the request path
            self.metrics.stage_errors.labels(name, stage.on_error).inc()
            log.error("ALERT stage %s failed (%s): %s: %s", name, stage.on_error, type(exc).__name__, exc)
            if stage.on_error == "fail_open":
                ctx.stages[name] = "error:open"
                return
            ctx.stages[name] = "error:closed"
            raise Deny(503, f"{name}_unavailable", f"The {name} stage is unavailable.") from None
        finally:
            self.metrics.stage_times.pending.append((STAGE_IDS[name], time.perf_counter() - t))
        ctx.stages.setdefault(name, "pass")

    async def _admit(self, rt: Runtime, ctx: RequestContext, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        adm = rt.config.admission
        enforce = adm.mode == "enforce"
        declared = headers.get(b"content-length")
        if enforce and declared is not None and declared.isdigit() and int(declared) > adm.max_body_bytes:
            ctx.stages["admission"] = "deny:body_too_large"
            raise Deny(413, "body_too_large", f"The body is larger than {adm.max_body_bytes} bytes.")
        try:
            body = await read_body(receive, adm.max_body_bytes if enforce else None)
        except BadRequest as exc:
            if exc.reason == "body_too_large":
                ctx.stages["admission"] = "deny:body_too_large"
            raise Deny(exc.status, exc.reason, str(exc)) from None
        if ctx.is_infer and ctx.method == "POST" and adm.mode != "off":
            try:
                ctx.parsed = parse_inputs(body, max_elements=adm.max_elements)
                if ctx.parsed.batch > adm.max_batch:
                    raise BadRequest(413, "batch_too_large", f"The batch has more than {adm.max_batch} samples.")
            except BadRequest as exc:
                if adm.mode == "enforce":
                    ctx.stages["admission"] = f"deny:{exc.reason}"
                    raise Deny(exc.status, exc.reason, str(exc)) from None
                ctx.stages["admission"] = f"shadow:{exc.reason}"
        return body

    def _guard_failed(self, rt: Runtime, exc: Exception) -> None:
        """A failed-auth guard step raised: its storage is the rate limits', so their ``on_error`` applies."""
        on_error = rt.config.rate_limits.on_error
        self.metrics.stage_errors.labels("auth_guard", on_error).inc()
        log.error("ALERT failed-auth guard storage failed (%s): %s: %s", on_error, type(exc).__name__, exc)
        if on_error == "fail_closed":
            raise Deny(503, "auth_guard_unavailable", "The failed-authentication guard is unavailable.") from None

    def _authenticate(self, rt: Runtime, ctx: RequestContext, headers: dict[bytes, bytes]) -> None:
        guard = rt.guard
        try:
            blocked = guard.blocked(ctx.source)
        except Exception as exc:  # the gateway boundary: the shared storage (Redis) may be down
            self._guard_failed(rt, exc)
            blocked = None
        tripped = guard.tripped_at is not None
        if tripped is not self._guard_tripped:  # the gauge follows the guard (set on change only)
            self._guard_tripped = tripped
            self.metrics.auth_guard.set(1 if tripped else 0)
        if blocked is not None:
            self.metrics.rate_limited.labels(blocked.limit).inc()
            if blocked.limit == "failed_auth_global":
                log.error("ALERT credential-stuffing guard tripped; refusing sources without a recent success")
            raise Deny(429, blocked.limit, "Too many failed authentications.", blocked.headers)
        try:
            ctx.identity = rt.authenticator.authenticate(headers)
        except AuthFailure as failure:
            try:
                guard.failed(ctx.source)
            except Exception as exc:  # the gateway boundary, as above
                self._guard_failed(rt, exc)
            self.metrics.auth_failures.labels(failure.reason).inc()
            raise Deny(401, failure.reason, str(failure), ((b"www-authenticate", b'Bearer realm="hoplon"'),)) from None
        guard.succeeded(ctx.source)

    def _authorise(self, ctx: RequestContext) -> None:
        if ctx.model is not None and not has_scope(ctx.identity, "model", ctx.model):
            raise Deny(403, "scope", f"This identity may not call model {ctx.model!r}.")

    def _detect(self, detect: DetectStage, ctx: RequestContext) -> None:
        refusal = detect.check(ctx.identity.subject)
        if refusal is not None:
            raise Deny(*refusal)
        if detect.degraded(ctx.identity.subject):
            ctx.degraded = True
            ctx.stages["detect"] = "degrade"

    def _observe(self, rt: Runtime, detect: DetectStage, subject: str, parsed: ParsedInput, body: bytes) -> None:
        """Hand the served request to the detectors (off the hot path unless ``inline``)."""
        try:
            detect.record(subject, parsed.array.astype("float32"), body)
        except Exception as exc:  # the gateway boundary: a detector failure is an alert, never a crash
            on_error = rt.config.detect.on_error
            self.metrics.stage_errors.labels("detect", on_error).inc()
            log.error("ALERT detect stage failed (%s): %s: %s", on_error, type(exc).__name__, exc)
            if on_error == "fail_closed" and rt.config.detect.mode == "enforce":
                raise Deny(503, "detect_unavailable", "The detect stage is unavailable.") from None

    def _limit(self, rt: Runtime, ctx: RequestContext, model: str, batch: int) -> None:
        limited: Limited | None = rt.limiter.check(ctx.identity.subject, model, ctx.source, batch)
        if limited is not None:
            self.metrics.rate_limited.labels(limited.limit).inc()
            raise Deny(429, limited.limit, f"Rate limit {limited.limit} reached.", limited.headers)

    def _validate(self, rt: Runtime, ctx: RequestContext, model: str) -> None:
        if ctx.parsed is None:
            return
        profile = rt.profiles.get(model)
        shape = profile.shape if profile is not None else rt.shapes.get(model)
        got = tuple(ctx.parsed.array.shape[1:])
        if shape is not None and got != tuple(shape):
            raise Deny(422, "wrong_shape", f"Samples must have shape {list(shape)}. Got {list(got)}.")
        if profile is None:
            return
        violations, score = profile.check(ctx.parsed.array)
        ctx.scores["ood"] = score if score == 0.0 else round(score, 6)  # round(0.0, 6) is 0.0, at ~3k instructions
        if violations:
            v = violations[0]
            raise Deny(
                422, f"profile_{v.reason}", f"Sample {v.row}, feature {v.feature} = {v.value:g} is outside the profile."
            )
        if score > rt.config.validation.max_ood_score:
            raise Deny(422, "ood", f"The input is too far from the model's input space (score {score:.3f}).")

    async def _call_model(
        self, cfg: GatewayConfig, scope: Scope, receive: Receive, ctx: RequestContext, deadline: Deadline
    ) -> tuple[int, Headers, bytes]:
        cap = self._cap
        if cap is None:
            cap = self._cap = ConcurrencyCap(cfg.model_max_concurrency)
        t = time.perf_counter()
        if not cap.try_acquire():
            try:
                async with asyncio.timeout(cfg.model_timeout_s):
                    await cap.acquire()
            except TimeoutError:
                raise Deny(503, "busy", "The model is at its concurrency cap.") from None
        # The model call's own limit, inside the request's: the earlier of the two applies meanwhile.
        request_when, model_when = deadline.when, time.monotonic() + cfg.model_timeout_s
        if model_when < request_when:
            deadline.when, deadline.reason = model_when, "model"
        try:
            return await self._capture(scope, receive, ctx.body, ctx.parsed)
        except asyncio.CancelledError:
            if deadline.expired != "model" or not deadline.timed_out():
                raise
            raise Deny(504, "model_timeout", f"The model did not answer within {cfg.model_timeout_s} s.") from None
        except TimeoutError:  # the model's own client gave up
            raise Deny(504, "model_timeout", f"The model did not answer within {cfg.model_timeout_s} s.") from None
        except Deny:
            raise
        except Exception as exc:  # the gateway boundary: the model app's failure becomes a 502
            log.error("model call failed: %s: %s", type(exc).__name__, exc)
            raise Deny(502, "model_error", "The model failed.") from None
        finally:
            deadline.when, deadline.reason = request_when, "request"
            cap.release()
            self.metrics.stage_times.pending.append((_MODEL, time.perf_counter() - t))

    async def _capture(
        self, scope: Scope, receive: Receive, body: bytes, parsed: ParsedInput | None
    ) -> tuple[int, Headers, bytes]:
        replayed = False
        status, headers, chunks = 500, [], []
        if parsed is not None:
            scope = {**scope, "hoplon.input": parsed}

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def capture(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = int(message["status"]), list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, replay, capture)
        return status, headers, b"".join(chunks)

    def _harden(self, rt: Runtime, ctx: RequestContext, body: bytes) -> bytes:
        out = rt.config.output
        if out.mode == "off":
            ctx.stages["output"] = "off"
            return body
        t = time.perf_counter()
        try:
            doc, plain = load_json(body, strict=False)
            hardening = rt.hardening
            if (ctx.degraded or not has_scope(ctx.identity, "output", "scores")) and not hardening.label_only:
                hardening = Hardening(True, None, None, 0.0, hardening.noise_key, hardening.strip_fields)
            digests = ctx.digests()
            hardened, ctx.output = harden_response(doc, digests, hardening, finite=plain)
            ctx.stages["output"] = "pass" if out.mode == "enforce" else "shadow"
            if out.mode == "shadow":
                return body
            return dump_json(hardened, plain=plain)
        except (BadRequest, ValueError, TypeError, OverflowError) as exc:
            self.metrics.stage_errors.labels("output", out.on_error).inc()
            log.error("ALERT output hardening failed (%s): %s", out.on_error, exc)
            if out.on_error == "fail_open":
                ctx.stages["output"] = "error:open"
                return body
            ctx.stages["output"] = "error:closed"
            raise Deny(502, "output_unparsable", "The model's answer could not be hardened.") from None
        finally:
            self.metrics.stage_times.pending.append((_OUTPUT, time.perf_counter() - t))

    async def _audit(self, rt: Runtime, ctx: RequestContext, status: int) -> bool:
        """Submit the decision record; return True when it could not be written."""
        ledger = self.ledger
        if ledger is None:
            return False
        t = time.perf_counter()
        message = b"".join(ctx.digests()) if ctx.parsed is not None else ctx.body
        digest = rt.input_hmac(message)
        record = {
            "request_id": ctx.request_id,
            "source": ctx.source,
            "worker": _PID,
            "method": ctx.method,
            "path": ctx.path,
            "model": ctx.model,
            "model_version": rt.versions.get(ctx.model or ""),
            "model_digest": ctx.served.get("model_digest") or rt.digests.get(ctx.model or ""),
            "config_hash": rt.config.hash,
            "auth": ctx.identity.method,
            "key_id": ctx.identity.key_id,
            "input_hmac": "hmac-sha256:" + digest,
            "input_hmac_key": rt.hmac_key_id,
            "batch": ctx.parsed.batch if ctx.parsed is not None else None,
            "stages": ctx.stages,
            "decision": "deny" if ctx.denial else "allow",
            "status": status,
            "reason": ctx.denial.reason if ctx.denial else None,
            "scores": ctx.scores,
            "output": {"labels": ctx.output.get("labels", [])[:64]} if ctx.output else {},
            "latency_ms": _round_ms(time.perf_counter() - ctx.t0),
        }
        # Every field above is a str, a small int, None, a list of int labels, a dict of str, or the rounded
        # latency (0 or >= 0.001): what orjson writes as canonical JSON. Only the scores are open-ended.
        exact = True
        for value in ctx.scores.values():
            if type(value) is not float or not (value == 0.0 or 1e-4 <= abs(value) < 1e16):
                exact = False
        subject = ctx.identity.subject
        try:
            if rt.config.audit.durable:
                await asyncio.wrap_future(ledger.submit(record, kind="gateway.decision", identity=subject, exact=exact))
            else:  # nobody waits: no future to make and resolve (a failed commit reaches on_error)
                ledger.post(record, kind="gateway.decision", identity=subject, exact=exact)
        except Exception as exc:  # the gateway boundary: a ledger failure is an alert, never a crash
            self.metrics.audit_write_errors.inc()
            log.error("ALERT audit record %s not written: %s", ctx.request_id, exc)
            ctx.stages["audit"] = "error"
            return True
        finally:
            self.metrics.stage_times.pending.append((_AUDIT, time.perf_counter() - t))
        return False

    def _deny_response(self, ctx: RequestContext, denial: Deny) -> tuple[int, Headers, bytes]:
        body = json.dumps(
            {"error": {"code": denial.reason, "message": denial.message, "request_id": ctx.request_id}}
        ).encode()
        headers: Headers = [_JSON, (b"content-length", str(len(body)).encode()), *denial.headers]
        return denial.status, headers, body

    async def _operational(self, path: str, send: Send) -> None:
        status, body, ctype = 200, b"ok\n", b"text/plain"
        if path == "/metrics" and not self.config.metrics_enabled:
            status, body = 404, b"metrics are disabled\n"
        elif path == "/metrics":
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            self.metrics.fold()  # what this worker has buffered
            body, ctype = generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST.encode()
        elif path == "/readyz":
            problems = []
            if self.ledger is not None and not self.ledger.healthy:
                problems.append("audit ledger writer is not running")
            with contextlib.suppress(Exception):  # a broken storage is reported below
                if not self.runtime.storage.check():
                    problems.append("rate-limit storage is unreachable")
            if problems:
                status, body = 503, ("not ready: " + "; ".join(problems) + "\n").encode()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", ctype)]})
        await send({"type": "http.response.body", "body": body})
