"""The fourth round of request-path shortcuts decides and records exactly what the code they bypass does.

The straight-line chain of enforcing stages vs the generic per-stage wrapper; struct-packed input values vs
``np.asarray``; float-arithmetic rounding of scores and of the audit latency vs numpy and ``round``; the clip
test of an input profile vs its comparisons; the remembered identity of an API key.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hoplon.gateway import Firewall, KeyStore, parse_config
from hoplon.gateway import profile as profile_module
from hoplon.gateway.firewall import _round_ms
from hoplon.gateway.profile import Profile, build_profile
from hoplon.gateway.protocol import BadRequest, Hardening, _harden_small, _numeric, harden_response

from .fake import FakeModel
from .helpers import call


def _bits(values: list[float]) -> list[bytes]:
    return [struct.pack("<d", v) for v in values]


def test_latency_rounding_is_rounds_own() -> None:
    rng = random.Random(4)
    seconds = [0.0, 5e-7, 6.25e-5, 0.0005, 0.0015, 1.0, 123.4567891]
    seconds += [rng.random() * 10.0 ** rng.randint(-7, 2) for _ in range(20_000)]
    seconds += [(k + 0.5) / 1e6 for k in range(5_000)]  # half-microsecond ties
    assert _bits([_round_ms(s) for s in seconds]) == _bits([round(s * 1000, 3) for s in seconds])


@pytest.mark.parametrize(
    "data",
    [
        [],
        [0.5, -0.0, 3, True, False, 2**53 + 1, -(2**63), 2**64 - 1, 1e308, 5e-324],
        [float(v) for v in range(64)],
    ],
)
def test_flat_numbers_pack_as_numpy_converts_them(data: list[Any]) -> None:
    ours, theirs = _numeric(data), np.asarray(data, dtype=np.float64)
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape and ours.tobytes() == theirs.tobytes()
    assert ours.flags.writeable and ours.flags.c_contiguous


@pytest.mark.parametrize(
    ("data", "reason"), [([1.0, 10**400], "non_finite"), ([1.0, None, 3], "bad_values"), ([1.0, [2.0]], "bad_values")]
)
def test_what_struct_refuses_numpy_decides(data: list[Any], reason: str) -> None:
    with pytest.raises(BadRequest) as caught:
        _numeric(data)
    assert caught.value.reason == reason
    assert _numeric([1, 2.5, True, 10**20]).tolist() == [1.0, 2.5, 1.0, 1e20]  # numbers as floats, as before


@pytest.mark.parametrize(
    "data", [["1.5", 2.0], [[1.0, "2"]], ["nan", 1.0], [None, "1.5"], [10**400, "1"], [b"1"], [[1.0], ["x"]]]
)
def test_numbers_written_as_strings_are_refused(data: list[Any]) -> None:
    with pytest.raises(BadRequest) as caught:
        _numeric(data)
    assert caught.value.reason == "bad_values"
    assert str(caught.value) == "The input must hold numbers; it holds strings."


@pytest.mark.parametrize("digits", [0, 3, 8])
def test_score_rounding_matches_numpy_across_magnitudes_and_signs(digits: int) -> None:
    rng = np.random.default_rng(digits)
    hardening = Hardening(False, None, digits, 0.0, b"k" * 32, ())
    for scale in (1.0, 1e6, 2.0**51 / 10**digits, 1e30):
        rows = rng.normal(0, scale, (6, 5))
        rows[0, :3] = [-0.0, -0.4 / 10**digits, 0.5 / 10**digits]  # signed zeros and halves
        flat = rows.ravel().tolist()
        labels, out = _harden_small(flat, 5, hardening)
        assert labels == rows.argmax(axis=1).tolist()
        assert _bits(out) == _bits(rows.round(digits).ravel().tolist())


def test_scores_beyond_a_floats_range_after_scaling_are_kept_not_overflowed() -> None:
    hardening = Hardening(False, None, 6, 0.0, b"k" * 32, ())
    flat = [1e305, -1e305, 0.25, 3e300]
    labels, out = _harden_small(flat, 2, hardening)
    assert labels == [0, 1] and out == [1e305, -1e305, 0.25, 3e300]
    # numpy's path (more scores than the plain-Python one takes) keeps them too, without a warning
    matrix = np.asarray(flat * 1100).reshape(-1, 4)
    doc = {"outputs": [{"name": "p", "shape": list(matrix.shape), "datatype": "FP64", "data": matrix.ravel().tolist()}]}
    hardened, summary = harden_response(doc, [], hardening, finite=True)
    assert hardened["outputs"][0]["data"][:4] == [1e305, -1e305, 0.25, 3e300]
    assert summary["labels"][:2] == [0, 0]


def test_profile_clip_test_decides_as_the_full_check(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    reference = rng.random((40, 2, 3))
    reference[:, 0, 0] = rng.integers(0, 3, 40)  # a categorical feature
    raw = build_profile(reference, margin=0.05)
    swapped = {**raw, "min": list(raw["max"]), "max": list(raw["min"])}  # min > max: never the fast path
    clipped: list[int] = []
    clip = profile_module._clip

    def counted(*args: Any) -> Any:
        clipped.append(1)
        return clip(*args)

    monkeypatch.setattr(profile_module, "_clip", counted)
    for fast in (Profile(raw), Profile(swapped)):
        full = Profile(fast.raw)
        full._nested = False  # the comparisons and the score, always
        for k in range(200):
            x = reference[rng.integers(0, 40, 2)].copy() if k % 2 else rng.random((2, 2, 3)) * 1.2
            if k % 5 == 0:
                x[0, 1, 1] = -0.0
            assert fast.check(x) == full.check(x)
            assert fast.check(x.reshape(2, 1, 6)) == full.check(x)  # another sample shape: the flat clip
    assert clipped  # the clip test ran


def _firewall(tmp_path: Path, name: str, *, generic: bool) -> tuple[Firewall, dict[str, str]]:
    state = tmp_path / name
    raw: dict[str, Any] = {
        "version": 1,
        "models": {"m": {"routes": ["/predict"], "input_shape": [2]}},
        "stages": {"rate_limits": {"per_identity_model": "3/minute"}},
    }
    fw = Firewall(FakeModel(), parse_config(raw, state_dir=state), state_dir=state)
    assert fw.runtime.enforced  # the defaults: every stage enforces and fails closed
    if generic:
        fw.runtime.enforced = False
    keys = KeyStore(state)
    return fw, {"alice": keys.create("alice")[0], "bob": keys.create("bob", scopes=("model:other",))[0]}


def test_the_straight_line_chain_records_what_the_generic_one_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcomes = []
    for generic in (False, True):
        fw, keys = _firewall(tmp_path, f"generic-{generic}", generic=generic)
        assert fw.ledger is not None
        records: list[dict[str, Any]] = []
        post = fw.ledger.post

        def spy(record: dict[str, Any], post: Any = post, records: list[dict[str, Any]] = records, **kw: Any) -> None:
            records.append(record)
            post(record, **kw)

        monkeypatch.setattr(fw.ledger, "post", spy)
        statuses = []
        for body, key in [
            ({"instances": [[0.1, 0.2]]}, "alice"),  # served
            ({"instances": [[0.1, 0.2]]}, None),  # 401
            ({"instances": [[0.1, 0.2]]}, "bob"),  # 403 scope
            ({"instances": [[0.1, 0.2, 0.3]]}, "alice"),  # 422 wrong shape
            ({"instances": [[0.1, 0.2]]}, "alice"),  # served (the third of three)
            ({"instances": [[0.1, 0.2]]}, "alice"),  # 429 per identity and model
        ]:
            headers = {"x-api-key": keys[key]} if key else {}
            statuses.append(call(fw, "POST", "/predict", body=body, headers=headers).status)
        with monkeypatch.context() as patch:
            patch.setattr(fw.runtime.limiter, "check", lambda *a: 1 / 0)  # a broken storage: 503, fail closed
            statuses.append(call(fw, "POST", "/predict", body={"instances": [[0.1, 0.2]]}, headers=headers).status)
        fw.close()
        fields = ("stages", "decision", "status", "reason", "scores", "output", "batch", "auth", "model")
        outcomes.append((statuses, [[r[f] for f in fields] for r in records]))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == [200, 401, 403, 422, 200, 429, 503]
    assert outcomes[0][1][-1][0]["rate_limits"] == "error:closed"


def test_an_api_keys_identity_is_remembered_until_its_record_changes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fw = Firewall(FakeModel(), parse_config({"version": 1, "models": {"m": {"routes": ["/predict"]}}}, state_dir=state))
    store = KeyStore(state)
    key, record = store.create("alice")
    authenticator = fw.runtime.authenticator
    first = authenticator.authenticate({b"x-api-key": key.encode()})
    assert authenticator.authenticate({b"x-api-key": key.encode()}) is first
    store.revoke(record.key_id)
    assert authenticator.keys is not None
    authenticator.keys._checked = 0.0  # past the recheck interval
    assert call(fw, "POST", "/predict", body={"instances": [[0.1]]}, headers={"x-api-key": key}).status == 401
    fw.close()
