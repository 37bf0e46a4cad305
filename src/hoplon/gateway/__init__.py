"""hoplon's model firewall: one request chain as raw ASGI, served in-process, as a sidecar or as middleware.

``Firewall(app, config)`` wraps a FastAPI/Starlette model app; ``build_gateway(config, model=...)`` builds
the in-process (KServe v2) or sidecar form; ``hoplon serve`` runs either under uvicorn.
"""

from hoplon.gateway.auth import Identity
from hoplon.gateway.config import GatewayConfig, load_config, parse_config
from hoplon.gateway.firewall import Firewall
from hoplon.gateway.keys import ApiKey, KeyStore
from hoplon.gateway.profile import Profile, build_profile
from hoplon.gateway.schema import CONFIG_SCHEMA
from hoplon.gateway.server import build_gateway, inprocess_app, proxy_app, serve

__all__ = [
    "CONFIG_SCHEMA",
    "ApiKey",
    "Firewall",
    "GatewayConfig",
    "Identity",
    "KeyStore",
    "Profile",
    "build_gateway",
    "build_profile",
    "inprocess_app",
    "load_config",
    "parse_config",
    "proxy_app",
    "serve",
]
