"""Attackers against a live gateway over HTTP (loopback only): benign replay, extraction clients, Sybil and
rotating keys, adversarial-query clients (Square, HopSkipJump, a boundary walk)."""

from hoplon.redteam.adversarial import BoundaryWalk, run_adversarial
from hoplon.redteam.gateway import Contained, GatewayTarget, RateLimit, RedteamResult, parse_rate, redteam_gateway

__all__ = [
    "BoundaryWalk",
    "Contained",
    "GatewayTarget",
    "RateLimit",
    "RedteamResult",
    "parse_rate",
    "redteam_gateway",
    "run_adversarial",
]
