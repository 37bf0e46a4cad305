"""The ``hoplon audit robustness`` command end to end, and every bad-input case from the issue."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from hoplon.cli.main import main
from hoplon.core import report_schema
from hoplon.data import Dataset, save_npz
from hoplon.targets.torch_target import quiet_torchscript


@pytest.fixture(scope="module")
def files(
    tmp_path_factory: pytest.TempPathFactory, digits_model: torch.nn.Module, digits_test: Dataset
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    with quiet_torchscript():
        torch.jit.save(torch.jit.trace(digits_model, digits_test.x[:1]), str(root / "model.pt"))
    save_npz(digits_test.subset(slice(0, 60)), root / "data.npz")
    return {"model": root / "model.pt", "data": root / "data.npz", "root": root}


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_audit_writes_three_reports_and_a_summary(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run1"
    code, stdout, _ = _run(
        [
            "audit",
            "robustness",
            "--model",
            str(files["model"]),
            "--data",
            str(files["data"]),
            "--norm",
            "linf",
            "--eps",
            "0.05,0.1,0.2",
            "--attacks",
            "fgsm,pgd",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, stdout
    assert {p.name for p in out.iterdir()} == {"report.json", "report.html", "report.sarif"}
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, report_schema())
    rows = report["results"]["robustness"]
    assert {(r["attack"], r["eps"]) for r in rows} == {
        (a, e) for a in ("fgsm", "pgd", "worst-case") for e in (0.05, 0.1, 0.2)
    }
    assert "worst-case" in stdout and "robust acc" in stdout
    sarif = json.loads((out / "report.sarif").read_text())
    assert sarif["version"] == "2.1.0"


def test_policy_gate_fails_with_exit_code_1(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, _ = _run(
        [
            "audit",
            "robustness",
            "--model",
            str(files["model"]),
            "--data",
            str(files["data"]),
            "--eps",
            "0.3",
            "--attacks",
            "pgd",
            "--out",
            str(tmp_path / "gated"),
            "--fail-under",
            "robust_accuracy=0.6",
        ],
        capsys,
    )
    assert code == 1
    assert "FAIL" in stdout
    assert (tmp_path / "gated" / "report.json").exists()  # a failed gate still leaves the evidence


def _bad_npz(root: Path, name: str, **arrays: object) -> Path:
    path = root / name
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong-shape", "does not accept inputs of shape (1, 64)"),
        ("nan", "NaN or infinite"),
        ("out-of-bounds", "outside its declared bounds"),
        ("label-range", "has label 12, but the model has only 10 classes"),
        ("unknown-attack", "Unknown attack 'deepfool'"),
        ("eps-zero", "must be > 0"),
        ("eps-negative", "must be > 0"),
        ("bad-norm", "--norm must be linf or l2"),
        ("unreadable-model", "Cannot tell the format"),
        ("pickle-without-trust", "can run arbitrary code"),
        ("missing-model", "does not exist"),
        ("bad-gate", "Unknown gate metric"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2_and_no_output(
    case: str,
    message: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    digits_model: torch.nn.Module,
) -> None:
    model, data = str(files["model"]), str(files["data"])
    extra: list[str] = []
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    y = np.array([0, 1, 2, 3])
    if case == "wrong-shape":
        data = str(_bad_npz(tmp_path, "d.npz", x=x.reshape(4, 64), y=y, lower=np.float32(0), upper=np.float32(1)))
    elif case == "nan":
        x[0, 0, 0, 0] = np.nan
        data = str(_bad_npz(tmp_path, "d.npz", x=x, y=y))
    elif case == "out-of-bounds":
        data = str(_bad_npz(tmp_path, "d.npz", x=x + 1, y=y, lower=np.float32(0), upper=np.float32(1)))
    elif case == "label-range":
        data = str(
            _bad_npz(tmp_path, "d.npz", x=x, y=np.array([0, 1, 2, 12]), lower=np.float32(0), upper=np.float32(1))
        )
    elif case == "unknown-attack":
        extra = ["--attacks", "pgd,deepfool"]
    elif case == "eps-zero":
        extra = ["--eps", "0"]
    elif case == "eps-negative":
        extra = ["--eps=-0.1"]
    elif case == "bad-norm":
        extra = ["--norm", "l3"]
    elif case == "unreadable-model":
        (tmp_path / "junk.bin2").write_bytes(b"\x00\x01garbage" * 10)
        model = str(tmp_path / "junk.bin2")
    elif case == "pickle-without-trust":
        (tmp_path / "m.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
        model = str(tmp_path / "m.pkl")
    elif case == "missing-model":
        model = str(tmp_path / "nope.pt")
    elif case == "bad-gate":
        extra = ["--fail-under", "accuracy=0.5"]
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        ["audit", "robustness", "--model", model, "--data", data, "--out", str(out), *extra], capsys
    )
    assert code == 2, (stdout, stderr)
    text = " ".join(stderr.split())
    assert message in text
    assert "Traceback" not in stderr + stdout
    assert len([line for line in stderr.splitlines() if line.strip()]) <= 3
    assert not out.exists() or not any(out.iterdir())


def test_trusted_pickle_is_loaded(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], digits_model: torch.nn.Module
) -> None:
    torch.save(digits_model, tmp_path / "full.pt")
    code, _, _ = _run(
        [
            "audit",
            "robustness",
            "--model",
            str(tmp_path / "full.pt"),
            "--data",
            str(files["data"]),
            "--trust",
            "--attacks",
            "fgsm",
            "--eps",
            "0.1",
            "--out",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == 0


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = _run(["--help"], capsys)
    assert code == 0 and "audit" in stdout and "demo" in stdout
