"""`hoplon redteam gateway` against `hoplon serve` with examples/firewall/enforce.yaml on the digits demo model.

Trains the demo model (digits_cnn, 15 epochs, seed 0), serves it in-process behind the shipped enforce.yaml
(detectors in the worker thread, the default rate limits: 50/s per identity and per model, 100/s per source)
on 127.0.0.1, runs every red-team client with full budgets and a local copy of the model as the victim, and
writes the JSON results. Figures: docs/benchmarks.md (`hoplon redteam gateway`).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/redteam_gateway.py --out benchmarks/results/redteam_gateway.json
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "redteam_gateway.json")
    parser.add_argument("--budget", type=int, default=2000, help="queries per extraction client")
    parser.add_argument("--adversarial-budget", type=int, default=5000, help="queries per adversarial client")
    parser.add_argument("--clients", default="jbda,sybil,blinded,knockoff,rotating,square,hsja,walk")
    parser.add_argument("--rotating-keys", type=int, default=20)
    parser.add_argument("--benign", type=int, default=10)
    parser.add_argument("--rate-limits", choices=("default", "raised"), default="default")
    parser.add_argument(
        "--detect-mode", choices=("enforce", "shadow"), default="enforce", help="shadow: no containment."
    )
    args = parser.parse_args()

    from hoplon.data import demo
    from hoplon.models import digits_cnn, train_classifier
    from hoplon.targets.torch_target import quiet_torchscript

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="hoplon-redteam-"))
    train, test = demo("digits", split="train"), demo("digits", split="test")
    torch.manual_seed(0)
    model = digits_cnn()
    train_classifier(model, train.x, train.y, epochs=15, seed=0)
    model.eval()
    with quiet_torchscript(), torch.no_grad():
        torch.jit.save(torch.jit.trace(model, test.x[:1]), str(work / "digits.pt"))
    config = yaml.safe_load((ROOT / "examples" / "firewall" / "enforce.yaml").read_text())
    config["models"]["digits"]["path"] = str(work / "digits.pt")
    config["stages"]["audit"] = {"mode": "off"}
    config["stages"]["detect"]["mode"] = args.detect_mode
    if args.rate_limits == "raised":
        config["stages"]["rate_limits"] = {
            "per_identity": "100000/second",
            "per_identity_model": "100000/second",
            "per_source": "100000/second",
        }
    (work / "enforce.yaml").write_text(yaml.safe_dump(config))
    port = _free_port()
    hoplon = str(Path(sys.executable).with_name("hoplon"))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    server = subprocess.Popen(
        [hoplon, "serve", "--config", str(work / "enforce.yaml"), "--state-dir", str(work / "state"),
         "--port", str(port)],
        env=env,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("the gateway did not start")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        command = [
            hoplon, "redteam", "gateway", "--url", url, "--state-dir", str(work / "state"),
            "--budget", str(args.budget), "--adversarial-budget", str(args.adversarial_budget),
            "--benign", str(args.benign), "--clients", args.clients, "--rotating-keys", str(args.rotating_keys),
            "--victim", str(work / "digits.pt"), "--out", str(args.out),
        ]  # fmt: skip
        subprocess.run(command, env=env, check=True)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
