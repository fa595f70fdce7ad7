"""The runner's transport: JSON without ``json``, and plain values across the pipe between the judge and the
solution's process. Part of the trusted runner (``runner.py``), which loads this file by its path: standard
library only, nothing of ``pva_dagster``, and never on ``sys.path`` (a solution cannot import it by name).
"""

import _json
import builtins
import os
import sys

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one answer of the solution process; more is an error, not a verdict
# Containers inside containers a value may cross the pipe with: twice the depth Python's own ``repr`` and ``==``
# reach at the default recursion limit (~1,000), and a third of what the transport measured to fit in an
# 8 MiB C stack. Deeper values (a list that holds itself) are refused with a RecursionError, as Python would.
MAX_NESTING = 2000
_TRANSPORT_FRAMES = 8 * MAX_NESTING  # Python frames and C recursion the transport takes at that depth


# ---- JSON without ``json``: importing it imports ``re``, ~4 ms of every run's start. Its C half does the
# work (``_json``, what ``json`` itself uses); the texts are ours (a job from the pipeline, messages between
# the two processes), but the solution's process writes half of them, so they are parsed strictly.
class _Strict:
    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int

    @staticmethod
    def parse_constant(name):
        raise ValueError(f"{name} is not plain JSON")


_scan = _json.make_scanner(_Strict())  # type: ignore[arg-type]  # it reads these attributes only


def json_loads(text):
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    if end != len(text):
        raise ValueError("text after the JSON value")
    return value


def json_dumps(value):
    if value is None or value is True or value is False:
        return "null" if value is None else "true" if value else "false"
    if type(value) is int:
        return str(value)
    if type(value) is str:
        return _json.encode_basestring_ascii(value)
    if type(value) is list:
        return "[" + ",".join(json_dumps(item) for item in value) + "]"
    if type(value) is dict:
        return "{" + ",".join(_json.encode_basestring_ascii(k) + ":" + json_dumps(v) for k, v in value.items()) + "}"
    raise TypeError(f"{type(value).__name__} is not a JSON message part")


# ---- plain data across the pipe (both sides) -----------------------------------------------------------
# Every value is tagged JSON: the judge parses it with ``json`` (no code runs while it is read) and rebuilds
# values of the exact built-in types, whose comparisons the solution cannot change.
def deep(function, *args):
    """``function(*args)`` with room for a value nested MAX_NESTING deep, the recursion limit restored after (the
    solution's own code keeps Python's limit)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + _TRANSPORT_FRAMES)
    try:
        return function(*args)
    finally:
        sys.setrecursionlimit(limit)


def encode(value, handles, depth=0):
    if depth > MAX_NESTING:
        raise RecursionError(f"a value nested deeper than {MAX_NESTING} containers")
    if value is None or value is True or value is False:
        return value
    if isinstance(value, int):
        return ["i", hex(int.__index__(value))]  # hex: no digit limit for huge ints
    if isinstance(value, float):
        return ["f", float.hex(float.__float__(value))]  # exact, nan and inf included
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, complex):
        return ["c", float.hex(value.real), float.hex(value.imag)]
    if isinstance(value, (bytes, bytearray)):
        return ["b" if isinstance(value, bytes) else "B", bytes(memoryview(value)).hex()]
    depth += 1
    for kind, tag in ((list, "l"), (tuple, "t"), (set, "s"), (frozenset, "F")):
        if isinstance(value, kind):
            return [tag, [encode(item, handles, depth) for item in value]]
    if isinstance(value, dict):
        # OrderedDict compares in order and Counter counts a missing key as zero: each keeps its own equality
        name = (type(value).__module__, type(value).__name__)
        tag = {("collections", "OrderedDict"): "od", ("collections", "Counter"): "ct"}.get(name, "d")
        return [tag, [[encode(k, handles, depth), encode(v, handles, depth)] for k, v in dict.items(value)]]
    return _encode_other(value, handles, depth)


def _encode_other(value, handles, depth):
    """Numbers and ranges that are not built-in plain types but compare like them, rebuilt exactly by the
    judge; builtin types by name; anything else stays in the solution's process as a handle."""
    kind = type(value)
    if kind is type({}.keys()):  # set-like, and compares as a set does
        return ["s", [encode(item, handles, depth) for item in value]]
    if (kind.__module__, kind.__name__) == ("collections", "deque"):
        return ["dq", [encode(item, handles, depth) for item in value]]
    if kind is range:
        return ["R", *(encode(part, handles, depth) for part in (value.start, value.stop, value.step))]
    if (kind.__module__, kind.__name__) == ("decimal", "Decimal"):
        return ["D", str(value)]
    if (kind.__module__, kind.__name__) == ("fractions", "Fraction"):
        return ["Q", encode(value.numerator, handles, depth), encode(value.denominator, handles, depth)]
    if kind.__module__ == "numpy" and getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return encode(value.item(), handles, depth)  # a NumPy scalar (int64, float32, bool_) as its Python value
    if hasattr(kind, "__index__"):
        index = kind.__index__(value)
        if type(index) is int:
            return ["i", hex(index)]
    name = getattr(value, "__name__", "")
    if isinstance(value, type) and getattr(builtins, name, None) is value:
        return ["T", name]
    return handles(value)


def decode(data, handle):
    if data is None or data is True or data is False or type(data) is str:
        return data
    tag = data[0]
    if tag == "i":
        return int(data[1], 16)
    if tag == "f":
        return float.fromhex(data[1])
    if tag == "c":
        return complex(float.fromhex(data[1]), float.fromhex(data[2]))
    if tag in ("b", "B"):
        return (bytes if tag == "b" else bytearray).fromhex(data[1])
    if tag in ("l", "t", "s", "F"):
        kind = {"l": list, "t": tuple, "s": set, "F": frozenset}[tag]
        return kind(decode(item, handle) for item in data[1])
    if tag == "d":
        return {decode(k, handle): decode(v, handle) for k, v in data[1]}
    if tag == "r" and type(data[1]) is int:
        return handle(data[1])
    if tag == "R":
        return range(*(decode(part, handle) for part in data[1:4]))
    if tag in ("dq", "od", "ct"):
        import collections  # here only: rare, and not free to import on every run

        if tag == "dq":
            return collections.deque(decode(item, handle) for item in data[1])
        pairs = ((decode(k, handle), decode(v, handle)) for k, v in data[1])
        return (collections.OrderedDict if tag == "od" else collections.Counter)(dict(pairs))
    if tag == "D":
        import decimal

        return decimal.Decimal(data[1])
    if tag == "Q":
        import fractions

        return fractions.Fraction(decode(data[1], handle), decode(data[2], handle))
    if tag == "T" and isinstance(getattr(builtins, data[1], None), type):
        return getattr(builtins, data[1])
    raise ValueError("malformed value from the solution process")


def flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def send(fd, message):
    flush_output()  # the solution's prints so far, before the judge may kill it
    data = json_dumps(message).encode()
    data = len(data).to_bytes(4, "big") + data
    while data:
        data = data[os.write(fd, data) :]


def receive(fd):
    """The next message, or None once the other side is gone."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_MESSAGE_BYTES:
        raise ValueError(f"an answer of {size} bytes from the solution process is over the limit")
    body = _read_exactly(fd, size)
    return None if body is None else json_loads(body.decode())


def _read_exactly(fd, size):
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)
