"""Type-aware mutation of the literal arguments in MBPP asserts: a new value of the same type shape.

``mutate(value, rng)`` keeps the type of ``value`` and of its parts (a list of ints stays a list of ints, a
``(name, score)`` tuple keeps its length and its element types) and changes it by one edit that such inputs
are prone to break code on: ints step by one, go to 0, flip sign, double; floats are perturbed; strings get
a character inserted, deleted, replaced or swapped (drawn from their own alphabet), are reversed or emptied;
lists, homogeneous tuples, dicts and sets grow (by a perturbed copy of an element), shrink, shuffle or empty;
any container may instead have one of its elements mutated, recursively. Values are finite and small (floats
rounded to 3 decimals), so the asserts built from them stay readable. Randomness comes only from ``rng``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_TRIES = 8  # edits tried until one changes the value (an edit can be a no-op: shuffling [1, 1])
_EMPTY_P = 0.08  # how often a container or string is emptied: an edge value, but one among many
_FALLBACK_ALPHABET = "abcxyz AZ019"


def mutate(value: Any, rng: np.random.Generator) -> Any:
    """A value of the same type shape as ``value`` that differs from it where any edit can make it differ
    (an empty list, whose element type is unknown, and ``None`` come back unchanged)."""
    for _ in range(_TRIES):
        changed = _edit(value, rng)
        if repr(changed) != repr(value):
            return changed
    return value


def _edit(value: Any, rng: np.random.Generator) -> Any:
    kind = type(value)
    if kind is bool:
        return not value
    if kind is int:
        return _int(value, rng)
    if kind is float:
        return _float(value, rng)
    if kind is complex:
        return complex(_float(value.real, rng), value.imag)
    if kind is str:
        return _str(value, rng)
    if kind is bytes and value.isascii():
        return _str(value.decode("ascii"), rng).encode("ascii", errors="replace")
    if kind is list:
        return _sequence(value, rng)
    if kind is tuple:
        # A tuple of one element type is a sequence; a mixed one a record, whose fields keep their places.
        if len({type(item) for item in value}) == 1:
            return tuple(_sequence(list(value), rng))
        return tuple(_one_element(list(value), rng))
    if kind is dict:
        return _dict(value, rng)
    if kind in (set, frozenset):
        return kind(_set(set(value), rng))
    return value  # None, Ellipsis, bytes with non-ASCII: kept as they are


def _int(value: int, rng: np.random.Generator) -> int:
    step = int(rng.integers(1, 4))
    choices = [value + step, value - step, 0, -value, 2 * value + 1, value // 2, 1,
               int(rng.integers(-abs(value) - 10, abs(value) + 11))]  # fmt: skip
    return choices[int(rng.integers(len(choices)))]


def _float(value: float, rng: np.random.Generator) -> float:
    scale = max(1.0, abs(value))
    choices = [value + float(rng.normal()) * 0.5 * scale, value * 1.5, -value, 0.0, round(value) + 0.5,
               value + float(rng.uniform(-1, 1))]  # fmt: skip
    new = round(choices[int(rng.integers(len(choices)))], 3)
    return new if np.isfinite(new) else 0.0


def _str(value: str, rng: np.random.Generator) -> str:
    if not value or rng.random() < _EMPTY_P / 2:
        return value + _char(value, rng) if value else _char(value, rng) * int(rng.integers(1, 4))
    i = int(rng.integers(len(value)))
    op = int(rng.integers(7))
    if op == 0:  # insert
        return value[:i] + _char(value, rng) + value[i:]
    if op == 1:  # delete
        return value[:i] + value[i + 1 :]
    if op == 2:  # replace
        return value[:i] + _char(value, rng) + value[i + 1 :]
    if op == 3 and len(value) > 1:  # swap neighbours
        j = min(i, len(value) - 2)
        return value[:j] + value[j + 1] + value[j] + value[j + 2 :]
    if op == 4:  # swap the case of one character
        return value[:i] + value[i].swapcase() + value[i + 1 :]
    if op == 5:  # grow by a copy of a piece
        j = int(rng.integers(i, len(value) + 1))
        return value[:j] + value[i:j] + value[j:]
    return value[::-1] if rng.random() < 0.5 else ""


def _char(value: str, rng: np.random.Generator) -> str:
    alphabet = value if value and rng.random() < 0.7 else _FALLBACK_ALPHABET
    return alphabet[int(rng.integers(len(alphabet)))]


def _sequence(items: list[Any], rng: np.random.Generator) -> list[Any]:
    if not items:
        return items
    if rng.random() < _EMPTY_P:
        return []
    items = list(items)
    op = int(rng.integers(6))
    i = int(rng.integers(len(items)))
    if op == 0:  # grow by a perturbed copy of an element
        items.insert(int(rng.integers(len(items) + 1)), mutate(items[i], rng))
    elif op == 1:  # grow by a duplicate
        items.insert(int(rng.integers(len(items) + 1)), items[i])
    elif op == 2:  # shrink
        del items[i]
    elif op == 3:  # reorder
        order = rng.permutation(len(items))
        items = [items[int(k)] for k in order]
    else:  # change one element (recursively, so nested values change inside)
        items = _one_element(items, rng)
    return items


def _one_element(items: list[Any], rng: np.random.Generator) -> list[Any]:
    if not items:
        return items
    i = int(rng.integers(len(items)))
    return items[:i] + [mutate(items[i], rng)] + items[i + 1 :]


def _dict(value: dict[Any, Any], rng: np.random.Generator) -> dict[Any, Any]:
    if not value:
        return value
    if rng.random() < _EMPTY_P:
        return {}
    new = dict(value)
    keys = list(new)
    key = keys[int(rng.integers(len(keys)))]
    op = int(rng.integers(3))
    if op == 0:  # shrink
        del new[key]
    elif op == 1:  # grow by a new key (a mutated existing one) with a perturbed copy of its value
        new_key = mutate(key, rng)
        if new_key not in new:
            new[new_key] = mutate(new[key], rng)
    else:
        new[key] = mutate(new[key], rng)
    return new


def _set(value: set[Any], rng: np.random.Generator) -> set[Any]:
    if not value:
        return value
    if rng.random() < _EMPTY_P:
        return set()
    items = sorted(value, key=repr)  # a set's order is not reproducible (string hashes); this one is
    item = items[int(rng.integers(len(items)))]
    op = int(rng.integers(3))
    new = set(value)
    if op == 0:
        new.discard(item)
    elif op == 1:
        new.add(mutate(item, rng))
    else:
        new.discard(item)
        new.add(mutate(item, rng))
    return new
