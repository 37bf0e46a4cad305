"""`Registry[T]`: one typed name → object table per kind of check, with entry-point plugins.

Registration is explicit (``@attacks.register("pgd")``) and raises on a duplicate name unless
``replace=True``. Third-party plugins come through an entry-point group (e.g. ``hoplon.attacks``), loaded
lazily on the first lookup, never at import. Tests use :meth:`Registry.scoped`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import metadata
from typing import Generic, TypeVar

from hoplon.core.errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class Registry(Generic[T]):
    """A name → item table for one kind of thing (attacks, scanners, detectors…)."""

    def __init__(self, kind: str, *, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._group = entry_point_group
        self._plugins_loaded = entry_point_group is None

    def register(self, name: str, *, replace: bool = False) -> Callable[[T], T]:
        """Decorator: register the decorated item under ``name``."""

        def decorate(item: T) -> T:
            self.add(name, item, replace=replace)
            return item

        return decorate

    def add(self, name: str, item: T, *, replace: bool = False) -> None:
        if not name or name != name.strip().lower():
            raise InputError(f"A {self.kind} name must be lower-case without spaces. Got {name!r}.")
        if name in self._items and not replace:
            raise InputError(f"A {self.kind} named {name!r} is already registered; pass replace=True to override.")
        self._items[name] = item

    def _load_plugins(self) -> None:
        if self._plugins_loaded or self._group is None:
            return
        self._plugins_loaded = True
        for entry in metadata.entry_points(group=self._group):
            if entry.name in self._items:
                continue
            try:
                self._items[entry.name] = entry.load()
            except Exception as exc:  # a broken plugin must not break hoplon; say so and go on
                log.warning("Could not load %s plugin %r: %s", self.kind, entry.name, exc)

    def get(self, name: str) -> T:
        """Return the item registered as ``name``; raise :class:`InputError` naming the known ones."""
        if name not in self._items:
            self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise InputError(f"Unknown {self.kind} {name!r}; known: {known}.") from None

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    @contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Within the block, registrations are temporary; the table is restored afterwards."""
        saved = dict(self._items)
        try:
            yield self
        finally:
            self._items = saved
