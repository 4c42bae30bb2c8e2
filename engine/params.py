"""Typed, documented parameters of methods and encoders.

The command line turns each one into a ``--flag``; the window turns each one into a form field with
its range and a one-sentence tooltip. ``Param.parse`` is the one place a value is checked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Param:
    name: str  # snake_case; the flag is --name-with-dashes
    default: Any
    help: str  # one sentence, shown as tooltip and in --help
    type: type = float  # float, int, str or bool
    low: float | None = None  # inclusive bounds, for numbers
    high: float | None = None
    choices: Sequence[str] = field(default_factory=tuple)
    low_exclusive: bool = False  # e.g. a temperature must be > 0, not >= 0
    special: Sequence[str] = field(default_factory=tuple)  # words accepted besides numbers ("auto")
    check: Callable[[Any], Any] | None = None  # extra validation of a parsed value: raises ValueError

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        words = " or ".join(f"'{s}'" for s in self.special)
        if self.type is bool:
            return "true or false"
        if self.type is str:
            return "text" + (f" or {words}" if words else "")
        lo = "" if self.low is None else (f"> {self.low}" if self.low_exclusive else f">= {self.low}")
        hi = "" if self.high is None else f"<= {self.high}"
        rng = " and ".join(s for s in (lo, hi) if s)
        kind = "a whole number" if self.type is int else "a number"
        return f"{kind}{' ' + rng if rng else ''}" + (f", or {words}" if words else "")

    def parse(self, value: Any) -> Any:
        """Return the value converted to this parameter's type, or raise ValueError naming it."""
        if isinstance(value, str) and value in self.special:
            return value
        try:
            if self.type is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = value.lower() in ("true", "1", "yes")
                return bool(value)
            if self.type is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            out = self.type(value)
        except (TypeError, ValueError):
            raise ValueError(f"{self.flag}: {value!r} is not valid; allowed: {self.allowed()}") from None
        if self.choices and out not in self.choices:
            raise ValueError(f"{self.flag}: {out!r} is not valid; allowed: {self.allowed()}")
        if self.type in (int, float):
            if out != out or out in (float("inf"), float("-inf")):
                raise ValueError(f"{self.flag}: {value!r} is not valid; allowed: {self.allowed()}")
            too_low = self.low is not None and (out <= self.low if self.low_exclusive else out < self.low)
            too_high = self.high is not None and out > self.high
            if too_low or too_high:
                raise ValueError(f"{self.flag}: {out!r} is out of range; allowed: {self.allowed()}")
        if self.check is not None:
            self.check(out)
        return out


def resolve(params: Sequence[Param], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with the given values (unknown names are an error), every value checked."""
    known = {p.name: p for p in params}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {', '.join(unknown)}; this one takes: {', '.join(known) or 'none'}"
        )
    return {name: p.parse(given.get(name, p.default)) for name, p in known.items()}
