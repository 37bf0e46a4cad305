"""Fixtures of the gateway tests: the demo digits model as TorchScript, its profile, keys and JWT material."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hoplon.data import Dataset
from hoplon.gateway.profile import build_profile


@pytest.fixture(scope="session")
def digits_file(digits_model: torch.nn.Module, digits_test: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hoplon.targets.torch_target import quiet_torchscript

    path = tmp_path_factory.mktemp("model") / "digits.pt"
    digits_model.eval()
    with quiet_torchscript(), torch.no_grad():
        torch.jit.save(torch.jit.trace(digits_model, digits_test.x[:1]), str(path))
    return path


@pytest.fixture(scope="session")
def digits_profile(digits_train: Dataset, digits_test: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "profile.json"
    x = np.concatenate([digits_train.x.numpy(), digits_test.x.numpy()])
    path.write_text(json.dumps(build_profile(x, max_categories=0)))
    return path


class JwtIssuer:
    """An Ed25519 JWKS and tokens signed with it."""

    def __init__(self, folder: Path) -> None:
        import jwt

        self.key = Ed25519PrivateKey.generate()
        jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "k1", "alg": "EdDSA", "use": "sig"})
        self.jwks = folder / "jwks.json"
        self.jwks.write_text(json.dumps({"keys": [jwk]}))

    def token(
        self, *, aud: str = "hoplon-test", iss: str = "https://idp.test", exp_in: float = 300, **claims: Any
    ) -> str:
        import jwt

        now = int(time.time())
        payload = {"iss": iss, "aud": aud, "sub": "svc-1", "iat": now, "exp": now + int(exp_in), **claims}
        return jwt.encode(payload, self.key, algorithm="EdDSA", headers={"kid": "k1"})


@pytest.fixture(scope="session")
def redis_base() -> str:
    from .helpers import shared_redis

    return shared_redis()


@pytest.fixture()
def redis_url(redis_base: str) -> str:
    """The shared Redis, emptied for this test."""
    import redis

    client = redis.Redis.from_url(redis_base)
    client.flushdb()
    client.close()
    return redis_base


@pytest.fixture(scope="session")
def postgres_base() -> str:
    from .helpers import shared_postgres

    return shared_postgres()


@pytest.fixture()
def postgres_url(postgres_base: str) -> str:
    from .helpers import fresh_database

    return fresh_database(postgres_base)


@pytest.fixture()
def issuer(tmp_path: Path) -> JwtIssuer:
    return JwtIssuer(tmp_path)
