"""One registry per kind of thing (datasets, encoders, methods, losses, projections).

Adding a method or a loss touches one file: the module registers itself with a decorator, and the
package's ``__init__`` imports every module it holds, so the command line and the window list it.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = item
            return item

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.kind} '{name}': choose one of {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        return list(self._items)

    def items(self) -> Iterable[tuple[str, T]]:
        return self._items.items()

    def __contains__(self, name: str) -> bool:
        return name in self._items


def import_submodules(package_name: str, package_path: Iterable[str]) -> None:
    """Import every module of a package so that their ``@REGISTRY.register`` lines run."""
    for module in pkgutil.iter_modules(package_path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package_name}.{module.name}")
