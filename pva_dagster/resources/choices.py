"""One way to reject a config value that is not among its known choices, naming both."""

from collections.abc import Iterable


def one_of(what: str, value: str, known: Iterable[str]) -> str:
    known = sorted(known)
    if value not in known:
        raise ValueError(f"unknown {what} {value!r}; expected one of {known}")
    return value
