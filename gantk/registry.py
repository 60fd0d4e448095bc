"""A small generic registry: one instance per kind of component."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .errors import DuplicateComponentError, PluginError, UnknownComponentError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    plugin: str


class Registry(Generic[T]):
    """Maps names to components and remembers which plugin registered each."""

    def __init__(self, kind: str, base: type, hint: str | None = None):
        self.kind = kind
        self.base = base
        self.hint = hint
        self._entries: dict[str, Entry[T]] = {}

    def check(self, obj: Any, plugin: str) -> None:
        """Raise :class:`PluginError` unless ``obj`` is a named subclass of the base."""
        if not (isinstance(obj, type) and issubclass(obj, self.base)):
            raise PluginError(
                f"plugin {plugin!r} registered {obj!r} as a {self.kind}, "
                f"but it is not a subclass of {self.base.__name__}"
            )
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered {self.kind} {obj.__name__} without a name")

    def add(self, obj: T, plugin: str) -> None:
        self.check(obj, plugin)
        name = obj.name
        if name in self._entries:
            other = self._entries[name].plugin
            raise DuplicateComponentError(
                f"{self.kind} {name!r} is registered twice: by plugin {other!r} and by plugin {plugin!r}"
            )
        self._entries[name] = Entry(name, obj, plugin)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            raise UnknownComponentError(self.kind, name, self._entries, self.hint) from None

    def entry(self, name: str) -> Entry[T]:
        self.get(name)
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._entries)
