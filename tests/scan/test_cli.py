"""``hoplon scan|sign|verify|keygen|bom``: outputs, exit codes and the documented JSON layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hoplon.cli.scan import register
from tests.scan import builders as b

runner = CliRunner()


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:
        """Test root so that sub-commands keep their names."""

    return app


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    (tmp_path / "evil.pkl").write_bytes(b.call("os", "system", "id"))
    (tmp_path / "odd.pkl").write_bytes(b.call("mypkg.models", "Net"))
    (tmp_path / "ok.pkl").write_bytes(b.benign())
    return tmp_path


def test_scan_table_and_exit_codes(app: typer.Typer, files: Path) -> None:
    result = runner.invoke(app, ["scan", str(files)])
    assert result.exit_code == 1
    assert "os.system@2" in result.output and "unsafe" in result.output
    assert runner.invoke(app, ["scan", str(files / "ok.pkl")]).exit_code == 0
    assert runner.invoke(app, ["scan", str(files / "odd.pkl")]).exit_code == 1
    assert runner.invoke(app, ["scan", str(files / "odd.pkl"), "--policy", "high"]).exit_code == 0
    assert runner.invoke(app, ["scan", str(files / "evil.pkl"), "--policy", "critical"]).exit_code == 1


def test_scan_json_layout(app: typer.Typer, files: Path) -> None:
    result = runner.invoke(app, ["scan", str(files), "--format", "json"])
    records = json.loads(result.stdout)
    assert [Path(r["path"]).name for r in records] == ["evil.pkl", "odd.pkl", "ok.pkl"]
    evil = records[0]
    assert {"path", "format", "verdict", "severity", "findings"} <= evil.keys()
    assert (evil["format"], evil["verdict"], evil["severity"]) == ("pickle", "unsafe", "critical")
    finding = evil["findings"][0]
    assert finding["id"] == "scan.pickle.dangerous-callable"
    assert finding["evidence"]["callable"] == "os.system" and finding["evidence"]["offset"] == 2
    assert {"cwe:CWE-502", "atlas:AML.T0011.000", "owasp-ml:ML06"} <= set(finding["taxonomy"])
    assert records[1]["verdict"] == "suspicious" and records[2]["verdict"] == "clean"


def test_scan_sarif_to_file(app: typer.Typer, files: Path, tmp_path: Path) -> None:
    out = tmp_path / "scan.sarif"
    result = runner.invoke(app, ["scan", str(files / "evil.pkl"), "--format", "sarif", "--out", str(out)])
    assert result.exit_code == 1
    sarif = json.loads(out.read_text())
    assert sarif["version"] == "2.1.0"
    res = sarif["runs"][0]["results"][0]
    assert res["ruleId"] == "scan.pickle.dangerous-callable" and res["level"] == "error"
    assert res["locations"][0]["physicalLocation"]["region"]["byteOffset"] == 2


def test_scan_missing_path_is_an_input_error(app: typer.Typer, tmp_path: Path) -> None:
    from hoplon.core.errors import InputError

    result = runner.invoke(app, ["scan", str(tmp_path / "missing")])
    assert isinstance(result.exception, InputError)


def test_keygen_sign_verify_and_bom(app: typer.Typer, tmp_path: Path, benign_corpus: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.safetensors").write_bytes(b"\x00" * 8)
    priv, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    assert runner.invoke(app, ["keygen", "--private", str(priv), "--public", str(pub)]).exit_code == 0
    assert runner.invoke(app, ["sign", str(model), "--key", str(priv)]).exit_code == 0
    assert runner.invoke(app, ["verify", str(model), "--key", str(pub)]).exit_code == 0
    (model / "w.safetensors").write_bytes(b"\x01" * 8)
    result = runner.invoke(app, ["verify", str(model), "--key", str(pub)])
    assert result.exit_code == 1 and "w.safetensors" in result.output
    out = tmp_path / "model.cdx.json"
    assert runner.invoke(app, ["bom", str(benign_corpus), "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["bomFormat"] == "CycloneDX"


def test_cli_startup_imports_no_heavy_library() -> None:
    import subprocess
    import sys

    code = (
        "import sys; import hoplon.cli.scan, hoplon.scan;"
        "heavy = [m for m in ('torch', 'numpy', 'onnx', 'h5py', 'cryptography', 'cyclonedx', 'model_signing')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_to_report_is_a_valid_hoplon_report(files: Path) -> None:
    import jsonschema

    from hoplon.core.report import report_schema
    from hoplon.scan import scan_paths, to_report

    report = to_report(scan_paths([files]))
    doc = report.to_dict()
    jsonschema.validate(doc, report_schema())
    assert doc["kind"] == "scan" and len(doc["results"]["files"]) == 3
    assert {f["id"] for f in doc["findings"]} >= {"scan.pickle.dangerous-callable"}


def test_scan_fast_path_skips_typer_and_pydantic(files: Path) -> None:
    """``hoplon scan`` runs through argparse: Typer (and the pydantic it pulls in) never load."""
    import subprocess
    import sys

    code = (
        "import json, sys; from hoplon.cli.scanning import main;"
        f"rc = main([{str(files / 'evil.pkl')!r}, '--format', 'json']);"
        "print(json.dumps([rc, [m for m in ('typer', 'pydantic', 'rich') if m in sys.modules]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    rc, loaded = json.loads(out.strip().splitlines()[-1])
    assert rc == 1 and loaded == []


def test_scan_through_main_and_usage_errors(files: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hoplon.cli.main import main

    assert main(["scan", str(files / "ok.pkl"), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["verdict"] == "clean"
    assert main(["scan", str(files / "evil.pkl"), "--policy", "nonsense"]) == 2
    assert "Unknown severity" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", str(files), "--format", "yaml"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
