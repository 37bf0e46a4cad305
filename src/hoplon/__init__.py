"""hoplon: security for machine-learning systems.

Import what you need from the subpackages (``hoplon.core``, ``hoplon.targets``, ``hoplon.attacks``,
``hoplon.audit``…); this top-level module stays light so that ``import hoplon`` never pulls in torch.
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from hoplon.core.report import hoplon_version

        return hoplon_version()
    raise AttributeError(f"module 'hoplon' has no attribute {name!r}")
