"""Operational features on real servers: trusted proxies, audit HMAC key rotation, upstream TLS, JWKS refresh."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import logging
import os
import signal
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hoplon.cli.main import main
from hoplon.core.errors import InputError
from hoplon.gateway import Firewall, KeyStore, build_gateway, parse_config
from hoplon.gateway.audit_keys import find_hmac_key, hmac_key_id
from hoplon.gateway.auth import JwksCache
from hoplon.gateway.sources import MAX_FORWARDED_BYTES, forwarded_client, source_resolver

from .conftest import JwtIssuer
from .fake import FakeModel
from .helpers import acall, call, free_port, uvicorn_server, v2, write_config


@contextlib.contextmanager
def serving(app: Any, **options: Any) -> Iterator[str]:
    """``app`` under uvicorn on 127.0.0.1 in a thread, with uvicorn ``options``; yield the port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="on", **options)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        assert time.time() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield str(port)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


# ------------------------------------------------------------------ trusted proxies


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


def test_forwarded_for_is_read_from_the_right_and_only_from_trusted_peers() -> None:
    lb = _nets("10.0.0.0/8", "2001:db8::/32")
    assert forwarded_client("203.0.113.7", [b"198.51.100.1"], lb) == "203.0.113.7"  # untrusted peer: ignored
    assert forwarded_client("10.0.0.2", [b"198.51.100.1"], lb) == "198.51.100.1"
    # The client forged the left part; the balancer appended what it saw.
    assert forwarded_client("10.0.0.2", [b"1.1.1.1, 198.51.100.1"], lb) == "198.51.100.1"
    assert forwarded_client("10.0.0.2", [b"198.51.100.1, 10.9.9.9"], lb) == "198.51.100.1"  # two proxies
    assert forwarded_client("10.0.0.2", [b"198.51.100.1", b"10.9.9.9"], lb) == "198.51.100.1"  # two headers
    assert forwarded_client("10.0.0.2", [b"198.51.100.1, not-an-ip"], lb) == "198.51.100.1"  # malformed: skipped
    assert forwarded_client("10.0.0.2", [b"198.51.100.1:4711"], lb) == "198.51.100.1"
    assert forwarded_client("10.0.0.2", [b"[2001:db9::1]:443"], lb) == "2001:db9::1"
    assert forwarded_client("10.0.0.2", [b"::ffff:198.51.100.3"], lb) == "198.51.100.3"
    assert forwarded_client("2001:db8::5", [b"2001:db9::1"], lb) == "2001:db9::1"
    # Fail to the peer: nothing usable, only trusted hops, or a header beyond the bounds.
    assert forwarded_client("10.0.0.2", [b"junk, , ;;"], lb) == "10.0.0.2"
    assert forwarded_client("10.0.0.2", [b"10.1.1.1, 10.2.2.2"], lb) == "10.0.0.2"
    assert forwarded_client("10.0.0.2", [b"198.51.100.1, " + b"x" * MAX_FORWARDED_BYTES], lb) == "10.0.0.2"
    hops = b", ".join([b"198.51.100.1"] + [b"10.0.0.9"] * 40)
    assert forwarded_client("10.0.0.2", [hops], lb) == "10.0.0.2"  # the client is beyond the hop bound
    assert source_resolver([])({"client": ("10.0.0.2", 1), "headers": [(b"x-forwarded-for", b"1.2.3.4")]}) == (
        "10.0.0.2"
    )
    with pytest.raises(InputError, match="trusted_proxies"):
        parse_config({"version": 1, "server": {"trusted_proxies": ["10.0.0.300/8"]}})


def test_rfc7239_forwarded_is_read_when_configured_and_only_then() -> None:
    lb = _nets("10.0.0.0/8", "2001:db8::/32")

    def rfc(peer: str, *values: bytes) -> str:
        return forwarded_client(peer, list(values), lb, header="forwarded")

    assert rfc("10.0.0.2", b"for=198.51.100.1;proto=https;by=10.0.0.2") == "198.51.100.1"
    assert rfc("10.0.0.2", b'for="[2001:db9::17]:4711"') == "2001:db9::17"
    assert rfc("10.0.0.2", b"For=1.1.1.1, for=198.51.100.1", b"for=10.9.9.9") == "198.51.100.1"  # forged left part
    assert rfc("10.0.0.2", b"for=198.51.100.1, for=unknown") == "198.51.100.1"  # unknown: skipped
    assert rfc("10.0.0.2", b"for=_hidden, proto=http") == "10.0.0.2"  # nothing usable: the peer
    assert rfc("203.0.113.7", b"for=198.51.100.1") == "203.0.113.7"  # untrusted peer: ignored
    # only the configured header is read: a client can send the other one unchecked
    scope = {"client": ("10.0.0.2", 1), "headers": [(b"x-forwarded-for", b"1.2.3.4"), (b"forwarded", b"for=5.6.7.8")]}
    assert source_resolver(["10.0.0.0/8"], header="forwarded")(scope) == "5.6.7.8"
    assert source_resolver(["10.0.0.0/8"])(scope) == "1.2.3.4"
    config = parse_config(
        {"version": 1, "server": {"trusted_proxies": ["10.0.0.0/8"], "forwarded_header": "forwarded"}}
    )
    assert config.forwarded_header == "forwarded"
    with pytest.raises(InputError, match="forwarded_header"):
        parse_config({"version": 1, "server": {"forwarded_header": "x-real-ip"}})


def test_per_source_limits_and_the_audit_use_the_forwarded_address_behind_a_trusted_proxy(tmp_path: Path) -> None:
    def run(trusted: list[str]) -> tuple[list[int], list[str]]:
        state = tmp_path / ("trusted" if trusted else "direct")
        raw: dict[str, Any] = {
            "version": 1,
            "server": {"trusted_proxies": trusted},
            "models": {"m": {"routes": ["/predict"]}},
            "stages": {"rate_limits": {"per_source": "2/minute", "per_identity": "100/minute"}},
        }
        fw = Firewall(FakeModel(), parse_config(raw, state_dir=state), state_dir=state)
        key = KeyStore(state).create("lb")[0]
        statuses = []
        # uvicorn's own X-Forwarded-For rewriting is off (as in `hoplon serve`): the firewall decides alone.
        with serving(fw, proxy_headers=False) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for xff in ("198.51.100.1", "6.6.6.6, 198.51.100.1", "198.51.100.1", "198.51.100.2"):
                reply = client.post(
                    "/predict", json={"instances": [[0]]}, headers={"x-api-key": key, "x-forwarded-for": xff}
                )
                statuses.append(reply.status_code)
            assert fw.ledger is not None
            fw.ledger.flush()
            sources = [e.body["source"] for e in fw.ledger.entries(kind="gateway.decision")]
        return statuses, sources

    # A spoofed header from an untrusted peer changes nothing: every request counts against 127.0.0.1.
    assert run([]) == ([200, 200, 429, 429], ["127.0.0.1"] * 4)
    # Behind a trusted proxy, the limit applies per forwarded client.
    assert run(["127.0.0.1/32"]) == (
        [200, 200, 429, 200],
        ["198.51.100.1", "198.51.100.1", "198.51.100.1", "198.51.100.2"],
    )


# ------------------------------------------------------------------ audit HMAC key rotation


def test_audit_hmac_key_rotation_names_the_key_and_keeps_old_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    state = tmp_path / "state"
    path = write_config(tmp_path / "h.yaml", {"models": {"m": {"routes": ["/predict"]}}})
    fw = Firewall(FakeModel(), path, state_dir=state)
    key = KeyStore(state).create("a")[0]
    body = {"instances": [[0.25, 0.5]]}
    h = {"x-api-key": key}

    async def run() -> None:
        assert (await acall(fw, "POST", "/predict", body=body, headers=h)).status == 200  # installs SIGHUP
        assert main(["keys", "rotate-hmac", "--state-dir", str(state)]) == 0
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        assert (await acall(fw, "POST", "/predict", body=body, headers=h)).status == 200

    asyncio.run(run())
    new_id = capsys.readouterr().out.strip()
    assert fw.ledger is not None
    fw.ledger.flush()
    first, second = (e.body for e in fw.ledger.entries(kind="gateway.decision"))
    fw.close()
    old_id = first["input_hmac_key"]
    assert second["input_hmac_key"] == new_id != old_id
    assert old_id == hmac_key_id(find_hmac_key(state, old_id))
    assert first["input_hmac"] != second["input_hmac"]  # same input, new key
    for name in (f"{old_id}.key", f"{new_id}.key"):
        assert (state / "audit-hmac.d" / name).stat().st_mode & 0o077 == 0
    assert (state / "audit-hmac.key").stat().st_mode & 0o077 == 0
    assert find_hmac_key(state, old_id).decode() not in json.dumps([first, second])
    # An investigator recomputes each record's HMAC from the suspected input and the key the record names.
    suspect = tmp_path / "suspect.json"
    suspect.write_text(json.dumps(body))
    for record in (first, second):
        args = ["keys", "input-hmac", "--key-id", record["input_hmac_key"], "--input", str(suspect)]
        assert main([*args, "--state-dir", str(tmp_path / "elsewhere")]) == 2  # another state dir: no such key
        capsys.readouterr()
        assert main([*args, "--state-dir", str(state)]) == 0
        assert capsys.readouterr().out.strip() == record["input_hmac"]
    assert main(["keys", "input-hmac", "--key-id", "ffffffff", "--input", str(suspect), "--state-dir", str(state)])
    assert "No HMAC key" in capsys.readouterr().err


# ------------------------------------------------------------------ upstream TLS


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None, **kw: Any
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, signer = issuer if issuer is not None else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )
    if kw.get("ca"):
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False
        )
    if kw.get("ip"):
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(kw["ip"]))]), critical=False
        )
    return builder.sign(signer, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, server_key, client_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = _cert("hoplon test CA", ca_key, None, ca=True)
    server = _cert("127.0.0.1", server_key, ("hoplon test CA", ca_key), ip="127.0.0.1")
    client = _cert("gateway", client_key, ("hoplon test CA", ca_key))

    def pem(name: str, data: bytes) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    return Pki(
        pem("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        pem("server.pem", server.public_bytes(serialization.Encoding.PEM)),
        pem("server.key", key_pem(server_key)),
        pem("client.pem", client.public_bytes(serialization.Encoding.PEM)),
        pem("client.key", key_pem(client_key)),
    )


@pytest.fixture(scope="module")
def tls_upstream(pki: Pki) -> Iterator[str]:
    """FakeModel over HTTPS on 127.0.0.1, requiring a client certificate from the test CA."""
    with serving(
        FakeModel(),
        ssl_certfile=str(pki.server_cert),
        ssl_keyfile=str(pki.server_key),
        ssl_ca_certs=str(pki.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    ) as port:
        yield f"https://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("tls", "status"),
    [
        ({"ca_file": "ca.pem", "cert_file": "client.pem", "key_file": "client.key"}, 200),
        (None, 502),  # the system CAs do not know the test CA: refused
        ({"ca_file": "ca.pem"}, 502),  # no client certificate: the upstream refuses
        ({"cert_file": "client.pem", "key_file": "client.key", "verify": False}, 200),
    ],
)
def test_sidecar_speaks_tls_to_its_upstream(
    tmp_path: Path,
    pki: Pki,
    tls_upstream: str,
    tls: dict[str, Any] | None,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    upstream: dict[str, Any] = {"url": tls_upstream}
    if tls is not None:
        upstream["tls"] = {k: str(pki.ca.parent / v) if isinstance(v, str) else v for k, v in tls.items()}
    config = write_config(
        tmp_path / "h.yaml",
        {"upstream": upstream, "models": {"m": {}}},
    )
    with caplog.at_level(logging.WARNING, logger="hoplon.gateway"):
        gateway = build_gateway(config, state_dir=tmp_path / "state")
    key = KeyStore(tmp_path / "state").create("c")[0]
    with serving(gateway) as port:  # its lifespan closes the pooled upstream connections
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v2/models/m/infer", json=v2([[0.9, 0.1]]), headers={"x-api-key": key}
        )
    assert reply.status_code == status, reply.text
    if status == 200:
        assert reply.json()["outputs"][0]["name"] == "probabilities"
    warned = any("NOT checked" in r.message for r in caplog.records)
    assert warned == (tls is not None and tls.get("verify") is False)


def test_upstream_tls_config_is_checked(tmp_path: Path, pki: Pki) -> None:
    with pytest.raises(InputError, match="https://"):
        parse_config({"version": 1, "upstream": {"url": "http://127.0.0.1:1", "tls": {"ca_file": str(pki.ca)}}})
    with pytest.raises(InputError, match="both cert_file and key_file"):
        parse_config({"version": 1, "upstream": {"url": "https://127.0.0.1:1", "tls": {"cert_file": "c.pem"}}})
    config = write_config(
        tmp_path / "h.yaml",
        {"upstream": {"url": "https://127.0.0.1:1", "tls": {"ca_file": "missing.pem"}}, "models": {"m": {}}},
    )
    with pytest.raises(InputError, match="TLS files"):
        build_gateway(config, state_dir=tmp_path)
    remote = write_config(tmp_path / "r.yaml", {"upstream": {"url": "https://10.1.2.3"}, "models": {"m": {}}})
    with pytest.raises(InputError, match="loopback"):
        build_gateway(remote, state_dir=tmp_path)


# ------------------------------------------------------------------ JWKS refresh


class _JwksServer:
    """A JWKS endpoint: holds its answers until ``release`` is set, counts fetches, can be made to fail."""

    def __init__(self, jwks: bytes) -> None:
        self.jwks, self.hits, self.answered, self.failing = jwks, 0, 0, False
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                outer.release.wait(10)
                outer.answered += 1
                status, body = (500, b"down") if outer.failing else (200, outer.jwks)
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _jwt_firewall(tmp_path: Path, url: str) -> Firewall:
    jwt_cfg = {
        "issuer": "https://idp.test",
        "audience": "hoplon-test",
        "jwks_url": url,
        "jwks_max_age_s": 1,
        "jwks_min_refresh_s": 3,
        "jwks_timeout_s": 5,
    }
    raw: dict[str, Any] = {
        "version": 1,
        "models": {"m": {"routes": ["/predict"]}},
        "stages": {"authentication": {"jwt": jwt_cfg, "failed_per_source": "1000/minute"}},
    }
    return Firewall(FakeModel(), parse_config(raw, state_dir=tmp_path), state_dir=tmp_path)


def test_jwks_url_is_fetched_off_the_event_loop_rate_limited_and_fails_closed(
    tmp_path: Path, issuer: JwtIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    jwks = _JwksServer(issuer.jwks.read_bytes())
    fw = _jwt_firewall(tmp_path, jwks.url)  # starts the first fetch, which hangs until released
    cache = JwksCache.shared(fw.config.authentication.jwt)  # type: ignore[arg-type]
    started = time.monotonic()
    api_key = KeyStore(tmp_path).create("k")[0]
    body = {"instances": [[0]]}
    try:
        with uvicorn_server(fw) as url, httpx.Client(base_url=url, timeout=10) as client:

            def timed(headers: dict[str, str]) -> tuple[int, float]:
                t = time.monotonic()
                status = client.post("/predict", json=body, headers=headers).status_code
                return status, time.monotonic() - t

            bearer = {"authorization": f"Bearer {issuer.token(scope='model:*')}"}
            # While the JWKS is on its way: no key is known, so the token is refused at once; others are served.
            status, took = timed(bearer)
            assert (status, took < 0.5) == (401, True)
            status, took = timed({"x-api-key": api_key})
            assert (status, took < 0.5) == (200, True)
            assert (jwks.hits, jwks.answered) == (1, 0)  # the fetch was still running meanwhile
            jwks.release.set()
            cache.wait(5)
            assert timed(bearer)[0] == 200
            assert jwks.hits == 1
            # A spray of made-up key ids: one refresh per interval, not one fetch per request.
            time.sleep(max(0.0, started + 3.1 - time.monotonic()))
            spray_started = time.monotonic()
            sprayed = [
                client.post(
                    "/predict", json=body, headers={"authorization": f"Bearer {_token_with_kid(issuer, f'x{i}')}"}
                ).status_code
                for i in range(30)
            ]
            spray_s = time.monotonic() - spray_started
            cache.wait(5)
            assert sprayed == [401] * 30
            assert 1 <= jwks.hits - 1 <= 1 + int(spray_s / 3)  # one fetch per 3 s interval, not one per request
            hits = jwks.hits
            # The IdP fails: the cached keys keep serving (the failed refresh is an alert).
            jwks.failing = True
            time.sleep(3.1)
            assert timed(bearer)[0] == 200
            cache.wait(5)
            assert jwks.hits == hits + 1 and timed(bearer)[0] == 200
            assert any("ALERT JWKS" in r.message for r in caplog.records)
    finally:
        fw.close()
        jwks.close()
    # No key ever fetched (the IdP is unreachable): every token is refused.
    dead = _jwt_firewall(tmp_path / "dead", f"http://127.0.0.1:{free_port()}/jwks.json")
    JwksCache.shared(dead.config.authentication.jwt).wait(5)  # type: ignore[arg-type]
    reply = call(dead, "POST", "/predict", body=body, headers={"authorization": f"Bearer {issuer.token()}"})
    assert reply.status == 401 and reply.json()["error"]["code"] == "jwt_unknown_key"
    dead.close()


def _token_with_kid(issuer: JwtIssuer, kid: str) -> str:
    import jwt

    now = int(time.time())
    claims = {"iss": "https://idp.test", "aud": "hoplon-test", "sub": "s", "iat": now, "exp": now + 60}
    return jwt.encode(claims, issuer.key, algorithm="EdDSA", headers={"kid": kid})
