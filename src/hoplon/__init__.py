"""hoplon: security for machine-learning systems.

Import what you need from the subpackages (``hoplon.core``, ``hoplon.targets``, ``hoplon.attacks``,
``hoplon.audit``…); this top-level module stays light so that ``import hoplon`` never pulls in torch.
"""

from hoplon.core.report import hoplon_version

__version__ = hoplon_version()
__all__ = ["__version__"]
