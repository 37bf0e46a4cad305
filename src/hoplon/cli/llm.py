"""``hoplon llm scan|proxy|train`` and ``hoplon redteam llm``: the LLM firewall's commands.

Exit codes: 0 every text allowed (or reviewed/redacted), 1 at least one ``block`` (or, for ``redteam llm``, a
regression past the baseline), 2 error. Only :mod:`hoplon.llm`'s light modules are imported at start-up.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from hoplon.cli.groups import redteam_app
from hoplon.core.errors import EXIT_ERROR, EXIT_OK, EXIT_POLICY, InputError

__all__ = ["llm_app", "register"]

llm_app = typer.Typer(
    help="Guard LLM applications: scan prompts and outputs, run an OpenAI-compatible firewall proxy.",
    no_args_is_help=True,
)


class ScanFormat(StrEnum):
    json = "json"
    text = "text"


class ChannelName(StrEnum):
    user = "user"
    retrieved = "retrieved"
    tool = "tool"
    email = "email"
    system = "system"


class Direction(StrEnum):
    input = "input"
    output = "output"


def _emit_text(name: str, result: dict[str, Any]) -> None:
    rules = ", ".join(sorted({m["rule"] for m in result["matches"]})) or "-"
    flags = ", ".join(result["flags"]) or "-"
    timing = " ".join(f"{k}={v:.2f}ms" for k, v in result["timings_ms"].items())
    typer.echo(f"{name}: {result['verdict']} score={result['score']:.3f} rules=[{rules}] flags=[{flags}] {timing}")
    for m in result["matches"]:
        typer.echo(f"  {m['rule']} [{', '.join(m['tags'])}] {m['text']!r}")


def _scan_jsonl(
    fw: Any, path: Path, direction: Direction, default_channel: str, out: Path | None, context: Any = None
) -> int:
    handle = sys.stdin if str(path) == "-" else None
    try:
        lines = handle.read().splitlines() if handle else path.read_bytes().decode("utf-8", "replace").splitlines()
    except OSError as exc:
        raise InputError(f"Cannot read {path}: {exc.strerror or exc}") from None
    sink = out.open("w", encoding="utf-8") if out else sys.stdout
    worst = EXIT_OK
    try:
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            record: dict[str, Any]
            try:
                data = json.loads(line)
                if not isinstance(data, dict) or not isinstance(data.get("text"), str):
                    raise ValueError("each record needs a string 'text'")
                rid = data.get("id", n)
                channel = str(data.get("channel") or default_channel)
                if direction is Direction.input:
                    result = fw.scan_input(data["text"], channel=channel)
                else:
                    result = fw.scan_output(data["text"], context=context)
                record = {"id": rid, **result.to_dict()}
                if result.verdict == "block":
                    worst = max(worst, EXIT_POLICY)
            except (ValueError, InputError) as exc:
                record = {"id": n, "verdict": "error", "error": str(exc)}
                worst = EXIT_ERROR
            sink.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out:
            sink.close()
    return worst


def scan_command(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files to scan; stdin when none is given.")] = None,
    channel: Annotated[ChannelName, typer.Option(help="Where the text comes from.")] = ChannelName.user,
    direction: Annotated[Direction, typer.Option(help="Scan as a prompt (input) or a model answer (output).")] = (
        Direction.input
    ),
    format: Annotated[ScanFormat, typer.Option("--format", help="Output format.")] = ScanFormat.json,
    policy: Annotated[Path | None, typer.Option(help="Policy file (YAML, JSON or TOML).")] = None,
    jsonl: Annotated[
        Path | None, typer.Option(help="Read records {text, id?, channel?} from a JSONL file ('-' = stdin).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="With --jsonl: write verdicts here instead of stdout.")] = None,
    system_prompt: Annotated[
        Path | None, typer.Option(help="Output scans: the system prompt, to detect its leakage.")
    ] = None,
    canary: Annotated[str | None, typer.Option(help="Output scans: the canary planted in the system prompt.")] = None,
) -> None:
    """Scan text for prompt injection (input) or leaks (output); print a verdict per text."""
    from hoplon.llm.firewall import Firewall, OutputContext

    fw = Firewall.from_policy(policy)
    context = None
    if system_prompt is not None or canary:
        try:
            prompt_text = system_prompt.read_text(encoding="utf-8", errors="replace") if system_prompt else None
        except OSError as exc:
            raise InputError(f"Cannot read {system_prompt}: {exc.strerror or exc}") from None
        context = OutputContext(system_prompt=prompt_text, canary=canary)
    if jsonl is not None:
        raise typer.Exit(_scan_jsonl(fw, jsonl, direction, channel.value, out, context))
    sources: list[tuple[str, bytes]] = []
    if not paths:
        sources.append(("<stdin>", sys.stdin.buffer.read()))
    else:
        for p in paths:
            try:
                sources.append((str(p), p.read_bytes()))
            except OSError as exc:
                raise InputError(f"Cannot read {p}: {exc.strerror or exc}") from None
    worst = EXIT_OK
    results = []
    for name, data in sources:
        if direction is Direction.input:
            result = fw.scan_input(data, channel=channel.value)
        else:
            result = fw.scan_output(data, context=context)
        doc = {"source": name, **result.to_dict()}
        results.append(doc)
        if result.verdict == "block":
            worst = EXIT_POLICY
    if format is ScanFormat.json:
        typer.echo(json.dumps(results[0] if len(results) == 1 else results, indent=2, ensure_ascii=False))
    else:
        for doc in results:
            _emit_text(doc["source"], doc)
    raise typer.Exit(worst)


def redteam_llm_command(
    target: Annotated[
        str, typer.Option(help="mock:echo|leaky|refuse, python:module:function, or an OpenAI-compatible /v1 URL.")
    ],
    out: Annotated[Path, typer.Option(help="Folder for report.json, report.html and report.sarif.")],
    suite: Annotated[str, typer.Option(help="Built-in suite name or a suite JSON file.")] = "owasp-llm01",
    seed: Annotated[int, typer.Option(help="Seed of markers and converters.")] = 0,
    repeats: Annotated[int, typer.Option(help="Times each converter chain of each probe is tried.")] = 1,
    baseline: Annotated[
        Path | None, typer.Option(help="Fail (exit 1) when a probe's success rate rises past this baseline.")
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Allowed rise in success rate over the baseline.")] = 0.0,
    update_baseline: Annotated[bool, typer.Option(help="Write the run's rates to --baseline.")] = False,
    allow_remote: Annotated[bool, typer.Option(help="Allow a target URL that is not on loopback.")] = False,
    timeout_s: Annotated[float, typer.Option(help="Per-request timeout for URL targets.")] = 60.0,
) -> None:
    """Run a red-team probe suite against an LLM endpoint and report attack success rates."""
    from hoplon.llm.redteam import compare_baseline, load_suite, make_target, run_suite, to_report
    from hoplon.report import write_report

    name, probes = load_suite(suite)
    result = run_suite(probes, make_target(target, allow_remote=allow_remote, timeout_s=timeout_s),
                       suite=name, seed=seed, repeats=repeats)  # fmt: skip
    regressions: list[dict[str, Any]] = []
    if baseline is not None and not update_baseline:
        regressions = compare_baseline(result, baseline, tolerance=tolerance)
    command = " ".join(["hoplon", "redteam", "llm", *sys.argv[3:]]) if len(sys.argv) > 3 else "hoplon redteam llm"
    report = to_report(result, command=command, regressions=regressions)
    paths = write_report(report, out)
    if baseline is not None and update_baseline:
        baseline.write_text(json.dumps(result.baseline(), indent=2) + "\n", encoding="utf-8")
    for row in report.results["probes"]:
        typer.echo(
            f"{row['probe']:<32} {row['successes']:>3}/{row['attempts']:<3} ASR {row['asr']:.0%} "
            f"[{row['asr_low']:.0%}, {row['asr_high']:.0%}]"
        )
    overall = report.results["overall"]
    typer.echo(f"overall ASR {overall['asr']:.1%}; report: {paths['html']}")
    if regressions:
        for r in regressions:
            typer.echo(f"REGRESSION {r['probe']}: {r['baseline_asr']:.0%} -> {r['asr']:.0%}", err=True)
        raise typer.Exit(EXIT_POLICY)


def proxy_command(
    upstream: Annotated[str, typer.Option(help="The model server's OpenAI-compatible base URL (…/v1).")],
    policy: Annotated[Path | None, typer.Option(help="Policy file (YAML, JSON or TOML).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless --allow-public).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8088,
    audit: Annotated[Path | None, typer.Option(help="Audit log (overrides the policy's proxy.audit_path).")] = None,
    allow_public: Annotated[bool, typer.Option(help="Allow binding to a non-loopback address.")] = False,
) -> None:
    """Run the OpenAI-compatible firewall proxy in front of a model server."""
    import dataclasses
    import ipaddress

    from hoplon.llm.firewall import Firewall
    from hoplon.llm.policy import Policy

    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_public:
        raise InputError(f"Refusing to bind to {host}: the proxy listens on loopback unless --allow-public is given.")
    pol = Policy.load(policy)
    if audit is not None:
        pol = dataclasses.replace(pol, proxy=dataclasses.replace(pol.proxy, audit_path=str(audit)))
    try:
        import uvicorn

        from hoplon.llm.proxy import create_app
    except ModuleNotFoundError as exc:
        raise InputError(
            f"The proxy needs the 'llm' extra (pip install 'hoplon[llm]'): {exc.name} is missing."
        ) from None
    app = create_app(upstream=upstream, policy=pol, firewall=Firewall(pol))
    typer.echo(f"hoplon llm proxy on http://{host}:{port}/v1 -> {upstream} (audit: {pol.proxy.audit_path})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def verify_audit_command(
    path: Annotated[Path, typer.Argument(help="The proxy's hash-chained audit log (JSONL).")],
) -> None:
    """Check that no audit record was changed, removed or reordered."""
    from hoplon.llm.proxy.audit import HashChainedJsonl

    n = HashChainedJsonl(path).verify()
    typer.echo(f"{path}: {n} records, chain intact")


def register(app: typer.Typer) -> None:
    llm_app.command("scan")(scan_command)
    llm_app.command("proxy")(proxy_command)
    llm_app.command("verify-audit")(verify_audit_command)
    redteam_app.command("llm")(redteam_llm_command)
    app.add_typer(llm_app, name="llm")
