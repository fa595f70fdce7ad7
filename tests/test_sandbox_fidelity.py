"""The judge says what Python says: each row of docs/sandbox.md's semantics table, both directions.

Every case runs twice: as a plain script (the solution, then the assert, in one ``python`` subprocess) and
through the judge (``run_solution``). Plain Python's verdict is computed here, never written down, and the judge
must agree with it, except in the rows the table names as the judge's own rule (an object that claims equality
with the test's value is not believed): there the judge must refuse what Python accepts.
"""

from __future__ import annotations

import subprocess
import sys
from typing import NamedTuple

import pytest

from pva_dagster.study.sandbox.execution import SandboxJob, SandboxLimits, run_many

LIMITS = SandboxLimits(wall_time_s=10.0)
POINT = """
class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def __eq__(self, other):
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)
    def __lt__(self, other):
        return (self.x, self.y) < (other.x, other.y)
    def __repr__(self):
        return f"Point({self.x}, {self.y})"
    def __len__(self):
        return 2
    def __getitem__(self, i):
        return (self.x, self.y)[i]
    def norm1(self):
        return abs(self.x) + abs(self.y)
def make(x):
    return Point(x, x + 1)
"""
NESTED = "def nest(d):\n    x = []\n    for _ in range(d):\n        x = [x]\n    return x\n"


class Case(NamedTuple):
    name: str
    solution: str
    test: str
    judge_refuses: str = ""  # the table's reason where the judge, by rule, refuses what Python accepts


CASES = [
    # plain values
    Case("list of int and str", "def f(x):\n    return [x, str(x)]\n", "assert f(1) == [1, '1']"),
    Case("tuple is not a list", "def f():\n    return (1, 2)\n", "assert f() == [1, 2]"),
    Case("tuple equals tuple", "def f():\n    return (1, 2)\n", "assert f() == (1, 2)"),
    Case("bytes are not str", "def f():\n    return b'ab'\n", "assert f() == 'ab'"),
    Case("bytearray equals bytes", "def f():\n    return bytearray(b'ab')\n", "assert f() == b'ab'"),
    Case("int beyond float precision", "def f():\n    return 2**70 + 1\n", "assert f() == 1180591620717411303425"),
    Case("int beyond float, off by one", "def f():\n    return 2**70\n", "assert f() == 1180591620717411303425"),
    Case("int against its float", "def f():\n    return 2**70 + 1\n", "assert f() == float(2**70 + 1)"),
    Case("float rounding", "def f():\n    return 0.1 + 0.2\n", "assert f() == 0.3"),
    Case("bool is an int", "def f():\n    return True\n", "assert f() == 1"),
    Case("NaN is not equal to NaN", "def f():\n    return float('nan')\n", "assert f() == float('nan')"),
    Case("NaN is NaN", "import math\ndef f():\n    return float('nan')\n", "assert math.isnan(f())"),
    Case("the same NaN twice", "x = float('nan')\ndef f():\n    return [x]\n", "assert f() != f()"),
    Case("dict order does not matter", "def f():\n    return {'b': 1, 'a': 2}\n", "assert f() == {'a': 2, 'b': 1}"),
    Case("sets of tuples", "def f():\n    return {(1, 2), (3, 4)}\n", "assert f() == {(3, 4), (1, 2)}"),
    Case("sets of tuples, one missing", "def f():\n    return {(1, 2), (3, 4)}\n", "assert f() == {(1, 2)}"),
    Case("frozenset equals set", "def f():\n    return frozenset({1})\n", "assert f() == {1}"),
    Case("None", "def f():\n    pass\n", "assert f() is None"),
    # generators, iterators, map, filter, range
    Case("generator consumed", "def f(n):\n    return (i * i for i in range(n))\n", "assert list(f(3)) == [0, 1, 4]"),
    Case("generator is not a list", "def f(n):\n    return (i * i for i in range(n))\n", "assert f(3) == [0, 1, 4]"),
    Case("map consumed", "def f(xs):\n    return map(abs, xs)\n", "assert list(f([-1, 2])) == [1, 2]"),
    Case("map is not a list", "def f(xs):\n    return map(abs, xs)\n", "assert f([-1, 2]) == [1, 2]"),
    Case("filter summed", "def f(xs):\n    return filter(None, xs)\n", "assert sum(f([0, 2, 3])) == 5"),
    Case("range equals range", "def f(n):\n    return range(n)\n", "assert f(3) == range(3)"),
    Case("range is not a list", "def f(n):\n    return range(n)\n", "assert f(3) == [0, 1, 2]"),
    Case("iterator in a for", "def f():\n    return iter([1, 2])\n", "assert [x for x in f()] == [1, 2]"),
    # collections, fractions, decimal
    Case("namedtuple equals tuple", "from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
         "def f():\n    return P(1, 2)\n", "assert f() == (1, 2)"),
    Case("namedtuple field", "from collections import namedtuple\nP = namedtuple('P', 'x y')\n"
         "def f():\n    return P(1, 2)\n", "assert f().y == 2"),
    Case("Counter equals dict", "from collections import Counter\ndef f(s):\n    return Counter(s)\n",
         "assert f('aab') == {'a': 2, 'b': 1}"),
    Case("Counter ignores zero counts", "import collections\ndef f(s):\n    return collections.Counter(s)\n",
         "assert f('aab') == collections.Counter(a=2, b=1, c=0)"),
    Case("OrderedDict order matters", "import collections\n"
         "def f():\n    return collections.OrderedDict([('b', 1), ('a', 2)])\n",
         "assert f() == collections.OrderedDict([('a', 2), ('b', 1)])"),
    Case("OrderedDict in order", "import collections\n"
         "def f():\n    return collections.OrderedDict([('b', 1), ('a', 2)])\n",
         "assert f() == collections.OrderedDict([('b', 1), ('a', 2)])"),
    Case("deque equals deque", "from collections import deque\ndef f():\n    return deque([1, 2])\n",
         "import collections\nassert f() == collections.deque([1, 2])"),
    Case("defaultdict equals dict", "from collections import defaultdict\n"
         "def f():\n    d = defaultdict(int)\n    d['a'] += 1\n    return d\n", "assert f() == {'a': 1}"),
    Case("Fraction exact", "from fractions import Fraction\ndef f():\n    return Fraction(1, 3)\n",
         "import fractions\nassert f() == fractions.Fraction(1, 3)"),
    Case("Fraction is not its float", "from fractions import Fraction\ndef f():\n    return Fraction(1, 3)\n",
         "assert f() == 1 / 3"),
    Case("Decimal exact", "from decimal import Decimal\ndef f():\n    return Decimal('0.1')\n",
         "import decimal\nassert f() == decimal.Decimal('0.1')"),
    Case("Decimal is not the float", "from decimal import Decimal\ndef f():\n    return Decimal('0.1')\n",
         "assert f() == 0.1"),
    # the solution's own classes
    Case("own class equals own class", POINT, "assert make(1) == Point(1, 2)"),
    Case("own class, wrong value", POINT, "assert make(1) == Point(2, 2)"),
    Case("own class not equal", POINT, "assert make(1) != Point(2, 3)"),
    Case("own class in a list", POINT, "assert [make(1), make(2)] == [Point(1, 2), Point(2, 3)]"),
    Case("own class ordering", POINT, "assert make(1) < make(2)"),
    Case("own class method", POINT, "assert make(1).norm1() == 3"),
    Case("own class attribute", POINT, "assert make(1).y == 2"),
    Case("own class repr", POINT, "assert repr(make(1)) == 'Point(1, 2)'"),
    Case("own class str", POINT, "assert str(make(1)) == 'Point(1, 2)'"),
    Case("own class len", POINT, "assert len(make(1)) == 2"),
    Case("own class items", POINT, "assert list(make(1)) == [1, 2]"),
    Case("own class index", POINT, "assert make(1)[1] == 2"),
    Case("own class in a key function", POINT, "assert sorted([make(2), make(1)], key=lambda p: p.x)[0].x == 1"),
    Case("own class against the test's tuple", POINT, "assert make(1) == (1, 2)"),
    Case("an always-equal object against the test's list",
         "class Yes:\n    def __eq__(self, other):\n        return True\ndef f():\n    return Yes()\n",
         "assert f() == [1, 2, 3]", judge_refuses="an object that claims equality with the test's value"),
    Case("an int that claims equality",
         "class Int(int):\n    def __eq__(self, other):\n        return True\ndef f():\n    return Int(0)\n",
         "assert f() == 7", judge_refuses="an object that claims equality with the test's value"),
    # deep nesting
    Case("nested 300 deep, printed", NESTED, "assert repr(nest(300)) == '[' * 301 + ']' * 301"),
    Case("nested 300 deep, compared", NESTED, "assert nest(300) == nest(300)"),
    Case("nested 900 deep, measured", NESTED, "assert len(nest(900)) == 1"),
    Case("nested 300 deep, wrong", NESTED, "assert repr(nest(300)) == '[' * 300 + ']' * 300"),
]


def _plain_python(case: Case, tmp_path) -> bool:
    script = case.solution + "\n" + case.test + "\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, timeout=60)
    return done.returncode == 0


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    """(plain Python, the judge) per case; the judge runs all cases in one pool, as Phase 1 does."""
    tmp = tmp_path_factory.mktemp("plain")
    judged = run_many([SandboxJob(c.solution, (c.test,)) for c in CASES], LIMITS)
    return {c.name: (_plain_python(c, tmp), j.passed) for c, j in zip(CASES, judged, strict=True)}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_the_judge_agrees_with_python(case, verdicts):
    python, judge = verdicts[case.name]
    if case.judge_refuses:
        assert python and not judge, f"Python {python}, the judge {judge}: {case.judge_refuses}"
    else:
        assert judge == python, f"Python says {python}, the judge {judge}"


def test_both_verdicts_occur():
    """The table holds correct and wrong solutions alike: a judge that refused or passed everything fails."""
    names = {c.name for c in CASES if not c.judge_refuses}
    assert len(names) > 20
    assert {"tuple is not a list", "own class equals own class"} <= names


def test_nesting_as_deep_as_python_prints_it():
    """The deepest list plain Python prints at its default recursion limit crosses the pipe and compares."""
    probe = "import sys\nx = []\nd = 0\nwhile True:\n    try:\n        repr([x])\n    except RecursionError:\n" \
            "        break\n    x, d = [x], d + 1\nprint(d)\n"
    deepest = int(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout)
    assert deepest > 900
    result = run_many([SandboxJob(NESTED, (f"assert repr(nest({deepest})) == '[' * {deepest + 1} + ']' * "
                                           f"{deepest + 1}",))], LIMITS)[0]
    assert result.passed, result


def test_a_list_that_holds_itself_is_refused_not_a_crash():
    result = run_many([SandboxJob("def f():\n    a = []\n    a.append(a)\n    return a\n",
                                  ("assert len(f()) == 1",))], LIMITS)[0]
    assert not result.passed and "nested deeper than" in result.message, result
