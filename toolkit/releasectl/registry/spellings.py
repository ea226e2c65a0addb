"""The spellings of a model's name in its code, and renaming them in a copy.

A model named `red-wine` is `red-wine` where a DNS label fits (the bento, the
service name), `red_wine` where an identifier must be (a BentoML model tag's
prefix, a Prometheus metric) and `RedWine` in a class name
(docs/ARCHITECTURE.md, "New models")."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Spellings:
    name: str  # as given: a lower-case DNS label

    @property
    def snake(self) -> str:
        return self.name.replace("-", "_")

    @property
    def metric(self) -> str:
        """A Prometheus metric name's prefix: it may not start with a digit."""
        return f"model_{self.snake}" if self.snake[:1].isdigit() else self.snake

    @property
    def upper(self) -> str:
        return self.snake.upper()

    @property
    def camel(self) -> str:
        """The class-name form; a name starting with a digit gets a `Model` prefix."""
        camel = "".join(part[:1].upper() + part[1:] for part in self.name.split("-"))
        return f"Model{camel}" if camel[:1].isdigit() else camel


# Where a spelling starts a word: not inside another identifier (`load_iris`
# stays) and not the first letters of a longer lower-case word (`irises` stays).
_STARTS = r"(?<![A-Za-z0-9_])"


def rename(text: str, old: str, new: str) -> tuple[str, int]:
    """`text` with the model name `old` renamed to `new` wherever one of its
    spellings starts a word: `iris` and `iris_clf`, `Iris` and `IrisClassifier`,
    `IRIS_HOME`; a lower-case name leading a `_`-joined word takes the new
    name's `_` spelling (`red_wine_clf`, a valid metric name). Returns the text
    and how many names were renamed."""
    a, b = Spellings(old), Spellings(new)
    # (old spelling, what may not follow it, new spelling)
    patterns = [(a.camel, "[a-z0-9]", b.camel)]
    if a.upper != a.camel:
        patterns.append((a.upper, "[A-Z0-9]", b.upper))
    if a.snake != a.name:
        patterns.append((a.snake, "[a-z0-9]", b.snake))
    count = 0
    for spelling, not_after, replacement in patterns:
        text, n = re.subn(f"{_STARTS}{re.escape(spelling)}(?!{not_after})", replacement, text)
        count += n

    def lower(match: re.Match[str]) -> str:
        return b.snake + "_" if match.group(1) else b.name

    text, n = re.subn(f"{_STARTS}{re.escape(a.name)}(?![a-z0-9])(_?)", lower, text)
    return text, count + n
