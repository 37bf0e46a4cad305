"""``hoplon audit privacy`` and ``hoplon harden dp`` end to end, and the issue's bad-input cases (exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import torch

from hoplon.audit.privacy import demo_splits
from hoplon.cli.main import main
from hoplon.core import report_schema
from hoplon.data import Dataset, save_npz
from hoplon.recipes import load_recipe, train
from hoplon.targets.torch_target import quiet_torchscript

RECIPE = (
    '[model]\nfactory = "tabular-mlp"\nargs = { hidden = 32 }\n\n[training]\nlr = 0.01\nepochs = 20\nbatch_size = 32\n'
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("privacy-cli")
    members, holdout, population = demo_splits("breast-cancer", n_members=100)
    save_npz(members, root / "train.npz")
    save_npz(holdout, root / "holdout.npz")
    save_npz(population, root / "population.npz")
    (root / "recipe.toml").write_text(RECIPE, encoding="utf-8")
    module, _ = train(load_recipe(root / "recipe.toml"), members.x, members.y, n_classes=2)
    with quiet_torchscript():
        torch.jit.save(torch.jit.trace(module, members.x[:1]), str(root / "model.pt"))
    return {
        "root": root,
        "train": root / "train.npz",
        "holdout": root / "holdout.npz",
        "recipe": root / "recipe.toml",
        "model": root / "model.pt",
        "cache": root / "cache",
    }


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _audit_args(files: dict[str, Path], out: Path, *extra: str, model: Path | None = None) -> list[str]:
    return [
        "audit",
        "privacy",
        "--model",
        str(model or files["model"]),
        "--train",
        str(files["train"]),
        "--holdout",
        str(files["holdout"]),
        "--recipe",
        str(files["recipe"]),
        "--out",
        str(out),
        "--attacks",
        "loss,lira-offline,rmia",
        "--references",
        "2",
        "--cache-dir",
        str(files["cache"]),
        "--n-boot",
        "20",
        *extra,
    ]


def test_audit_privacy_writes_the_documented_rows(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, err = _run(_audit_args(files, tmp_path / "a", "--sensitive-feature", "0"), capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "a" / "report.json").read_text())
    jsonschema.validate(doc, report_schema())
    rows = doc["results"]["privacy"]
    assert [r["attack"] for r in rows] == ["loss", "lira-offline", "rmia"]
    for row in rows:
        assert {"attack", "auc", "tpr_at_fpr", "advantage", "n_members", "n_nonmembers"} <= set(row)
        assert set(row["tpr_at_fpr"]) >= {"0.01", "0.001"}
        assert (row["n_members"], row["n_nonmembers"]) == (100, 100)
    assert len(doc["results"]["privacy_exposure"]) == 10
    assert doc["results"]["attribute_inference"][0]["feature"] == "x0"
    assert {f["id"] for f in doc["findings"]} >= {"privacy.membership", "privacy.attribute-inference"}
    assert "atlas:AML.T0024.000" in doc["findings"][0]["taxonomy"]
    assert doc["figures"]["roc"]["axes"] == "log-log"
    # The ROC curves are a section of report.html, not files of their own.
    page = (tmp_path / "a" / "report.html").read_text(encoding="utf-8")
    for section in ("membership", "roc", "exposure", "attribute-inference"):
        assert f'id="{section}"' in page
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["report.html", "report.json", "report.sarif"]
    assert "Membership inference" in stdout and "roc:" not in stdout
    # A re-run loads the reference models from the cache and gives the same figures (determinism).
    cached = sorted(files["cache"].glob("*.pt"))
    code, _, _ = _run(_audit_args(files, tmp_path / "b", "--sensitive-feature", "0"), capsys)
    assert code == 0 and sorted(files["cache"].glob("*.pt")) == cached
    again = json.loads((tmp_path / "b" / "report.json").read_text())["results"]["privacy"]
    for first, second in zip(rows, again, strict=True):
        assert {k: v for k, v in first.items() if k != "cpu_s"} == {k: v for k, v in second.items() if k != "cpu_s"}


def test_harden_dp_then_audit_before_and_after(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("opacus")
    private = tmp_path / "private.pt"
    args = ["harden", "dp", "--recipe", str(files["recipe"]), "--train", str(files["train"])]
    args += ["--test", str(files["holdout"]), "--epsilon", "3", "--delta", "1e-3", "--out", str(private)]
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    record = json.loads(Path(str(private) + ".record.json").read_text())
    assert record["epsilon"] <= 3.0 + 1e-2 and record["accountant"] == "prv" and record["sampling"] == "poisson"
    assert {"steps", "sample_rate", "noise_multiplier", "utility_cost", "baseline_test_accuracy"} <= set(record)
    assert "ε spent" in stdout
    code, _, err = _run(_audit_args(files, tmp_path / "c", "--model", str(private)), capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "c" / "report.json").read_text())
    models = {r["model"] for r in doc["results"]["privacy"]}
    assert models == {"model.pt", "private.pt"}
    dp_rows = [r for r in doc["results"]["privacy"] if r["model"] == "private.pt"]
    assert all(r["dp_consistent"] for r in dp_rows)
    assert [u["model"] for u in doc["results"]["privacy_utility"]] == ["private.pt", "model.pt"]


def _write(data: Dataset, path: Path) -> Path:
    save_npz(data, path)
    return path


def test_overlapping_records_are_left_out_with_a_warning(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    members, holdout, _ = demo_splits("breast-cancer", n_members=100)
    mixed = Dataset(
        x=torch.cat([holdout.x[:90], members.x[:10]]),
        y=torch.cat([holdout.y[:90], members.y[:10]]),
        bounds=holdout.bounds,
        name="h",
    )
    overlap = {**files, "holdout": _write(mixed, tmp_path / "overlap.npz")}
    code, _, _ = _run(_audit_args(overlap, tmp_path / "o", "--attacks", "loss"), capsys)
    assert code == 0
    assert "appear in both sets" in caplog.text
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["results"]["overlap_removed"] == 10
    assert doc["results"]["privacy"][0]["n_members"] == 90


@pytest.mark.parametrize("case", ["missing-class", "bad-recipe", "epsilon", "delta", "batchnorm", "no-model"])
def test_bad_input_exits_2_with_one_line(
    case: str, files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if case == "missing-class":
        _, holdout, _ = demo_splits("breast-cancer", n_members=100)
        only_zero = holdout.subset(holdout.y == 0)
        args = _audit_args({**files, "holdout": _write(only_zero, tmp_path / "h.npz")}, tmp_path / "x")
        expected = "same classes"
    elif case == "bad-recipe":
        bad = tmp_path / "bad.toml"
        bad.write_text('[model]\nfactory = "not_a_package.nets:mlp"\n', encoding="utf-8")
        args = _audit_args({**files, "recipe": bad}, tmp_path / "x")
        expected = "does not import"
    elif case == "epsilon":
        args = ["harden", "dp", "--recipe", str(files["recipe"]), "--train", str(files["train"]), "--epsilon", "0"]
        expected = "--epsilon"
    elif case == "delta":
        args = ["harden", "dp", "--recipe", str(files["recipe"]), "--train", str(files["train"]), "--delta", "0.01"]
        expected = "1/n"
    elif case == "batchnorm":
        pytest.importorskip("opacus")
        recipe = tmp_path / "bn.toml"
        recipe.write_text('[model]\nfactory = "tests.privacy.factories:with_batchnorm"\n', encoding="utf-8")
        args = ["harden", "dp", "--recipe", str(recipe), "--train", str(files["train"]), "--delta", "1e-3"]
        args += ["--out", str(tmp_path / "p.pt")]
        expected = "BatchNorm1d"
    else:
        args = ["audit", "privacy", "--train", str(files["train"]), "--holdout", str(files["holdout"])]
        expected = "--model"
    code, _, err = _run(args, capsys)
    assert code == 2
    assert expected in err and "Traceback" not in err


def test_sweep_epsilon_gives_a_privacy_utility_curve(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("opacus")
    args = ["audit", "privacy", "--train", str(files["train"]), "--holdout", str(files["holdout"])]
    args += ["--recipe", str(files["recipe"]), "--out", str(tmp_path / "s"), "--attacks", "loss", "--n-boot", "20"]
    args += ["--sweep-epsilon", "2,inf", "--cache-dir", str(files["cache"])]
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    curve = json.loads((tmp_path / "s" / "report.json").read_text())["results"]["privacy_utility"]
    assert [c["model"] for c in curve] == ["dp (ε=2)", "recipe (ε=∞)"]
    assert curve[0]["epsilon"] <= 2.0 + 1e-2 and curve[1]["epsilon"] is None  # JSON has no inf: null
    assert all(0 <= c["test_accuracy"] <= 1 for c in curve)
    assert "Privacy–utility" in stdout


def test_population_trains_the_shadow_models_and_overlap_exits_2(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    population = files["root"] / "population.npz"
    args = _audit_args(files, tmp_path / "p", "--attacks", "shadow", "--population", str(population))
    code, stdout, err = _run(args, capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "p" / "report.json").read_text())
    jsonschema.validate(doc, report_schema())
    assert doc["results"]["shadow_data"]["source"] == "population"
    assert doc["results"]["privacy"][0]["shadow_data"] == "population"
    assert "shadow models" in stdout and "disjoint" in stdout
    # Without --population the report names the fallback and why.
    code, stdout, _ = _run(_audit_args(files, tmp_path / "q", "--attacks", "shadow"), capsys)
    assert code == 0
    fallback = json.loads((tmp_path / "q" / "report.json").read_text())["results"]["shadow_data"]
    assert fallback["source"] == "audited-records" and "No --population data" in fallback["note"]
    assert "audited-records" in stdout
    # Population records that are also training records: refused, exit 2, one line.
    members, _, rest = demo_splits("breast-cancer", n_members=100)
    leaky = Dataset(
        x=torch.cat([rest.x, members.x[:5]]), y=torch.cat([rest.y, members.y[:5]]), bounds=rest.bounds, name="p"
    )
    leaky_path = _write(leaky, tmp_path / "leaky.npz")
    code, _, err = _run(
        _audit_args(files, tmp_path / "r", "--attacks", "shadow", "--population", str(leaky_path)), capsys
    )
    assert code == 2
    assert "share 5 of their" in err and "disjoint" in err and "Traceback" not in err
