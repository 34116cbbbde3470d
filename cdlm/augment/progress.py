"""A progress hook the CLI fills with a rich bar; library code only calls it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
# track(items, description, total) -> the same items, advancing a bar as they are consumed.
Track = Callable[[Iterable[T], str, int], Iterable[T]]


def no_track(items: Iterable[T], description: str, total: int) -> Iterable[T]:
    return items
