"""Sign/verify round trips (OpenSSF model-signing format, offline keys) and every tampering case."""

from __future__ import annotations

from pathlib import Path

import pytest

from hoplon.core.errors import InputError
from hoplon.scan.signing import SIGNATURE_NAME, generate_keypair, sign_model, verify_model


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("keys")
    generate_keypair(root / "private.pem", root / "public.pem")
    return root / "private.pem", root / "public.pem"


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    (folder / "sub").mkdir(parents=True)
    (folder / "weights.safetensors").write_bytes(b"\x00" * 64)
    (folder / "config.json").write_text("{}")
    (folder / "sub" / "tokenizer.json").write_text('{"v": 1}')
    return folder


def test_folder_round_trip(model: Path, keys: tuple[Path, Path]) -> None:
    sig = sign_model(model, private_key=keys[0])
    assert sig == model / SIGNATURE_NAME
    result = verify_model(model, public_key=keys[1])
    assert result.ok, result.describe()


def test_changed_added_and_removed_files_are_named(model: Path, keys: tuple[Path, Path]) -> None:
    sign_model(model, private_key=keys[0])
    (model / "config.json").write_text('{"evil": true}')
    (model / "extra.pkl").write_bytes(b"\x80\x02N.")
    (model / "sub" / "tokenizer.json").unlink()
    result = verify_model(model, public_key=keys[1])
    assert not result.ok
    assert result.changed == ("config.json",)
    assert result.added == ("extra.pkl",)
    assert result.removed == ("sub/tokenizer.json",)
    assert "config.json" in result.describe()


def test_single_file_round_trip_and_tamper(tmp_path: Path, keys: tuple[Path, Path]) -> None:
    file = tmp_path / "model.pt"
    file.write_bytes(b"weights")
    sig = sign_model(file, private_key=keys[0])
    assert sig == tmp_path / "model.pt.sig"
    assert verify_model(file, public_key=keys[1]).ok
    file.write_bytes(b"weightz")
    result = verify_model(file, public_key=keys[1])
    assert not result.ok and result.changed == ("model.pt",)


def test_wrong_key_fails(model: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    sign_model(model, private_key=keys[0])
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    result = verify_model(model, public_key=tmp_path / "other.pub")
    assert not result.ok and "does not verify" in (result.error or "")


def test_tampered_signature_fails(model: Path, keys: tuple[Path, Path]) -> None:
    sig = sign_model(model, private_key=keys[0])
    text = sig.read_text()
    sig.write_text(text.replace('"payload":"', '"payload":"A', 1))
    assert not verify_model(model, public_key=keys[1]).ok


def test_missing_signature_and_missing_paths(model: Path, keys: tuple[Path, Path]) -> None:
    assert verify_model(model, public_key=keys[1]).error is not None
    with pytest.raises(InputError):
        sign_model(model / "nope", private_key=keys[0])
    with pytest.raises(InputError):
        generate_keypair(keys[0], keys[1])  # refuses to overwrite
