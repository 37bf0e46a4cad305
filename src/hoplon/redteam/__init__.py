"""Attackers against a live gateway over HTTP (loopback only): benign replay, extraction clients, Sybil keys."""

from hoplon.redteam.gateway import Contained, GatewayTarget, RedteamResult, redteam_gateway

__all__ = ["Contained", "GatewayTarget", "RedteamResult", "redteam_gateway"]
