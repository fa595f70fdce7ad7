"""The prompt template and the code kept from a completion (the stop rule)."""

from __future__ import annotations

import pytest

from pva_dagster.study.prompts import DEFAULT_TEMPLATE, build_prompt, extract_code, function_end_reached


def test_prompt_is_the_studys_zero_shot_format():
    prompt = build_prompt("Write a function f.", ["assert f(1) == 1", "assert f(2) == 2"])
    assert prompt == "Write a function f.\n\nassert f(1) == 1\nassert f(2) == 2\n\n# Solution:"
    assert DEFAULT_TEMPLATE.endswith("# Solution:")
    with pytest.raises(ValueError, match="problem"):
        build_prompt("x", [], template="{problem}")


@pytest.mark.parametrize(
    ("completion", "kept"),
    [
        ("\ndef f(x):\n    return x\n\nprint(f(2))\n", "def f(x):\n    return x\n"),
        ("```python\ndef f(x):\n    return x\n```\nThis returns x.", "def f(x):\n    return x\n"),
        ("def f(x):\n    return g(x)\n\ndef g(x):\n    return x\n# Test\n", "def f(x):\n    return g(x)\n\ndef g(x):\n    return x\n"),
        ("def f(x):\n    return 1\n\ndef f_again(x):\n    return 2\n", "def f(x):\n    return 1\n"),
        ("import math\ndef f(x):\n    return math.sqrt(x)\n", "import math\ndef f(x):\n    return math.sqrt(x)\n"),
    ],
)
def test_extract_code_keeps_the_solution_only(completion, kept):
    assert extract_code(completion) == kept
    compile(extract_code(completion), "<solution>", "exec")


def test_stop_rule_waits_for_a_closed_line():
    assert not function_end_reached("def f(x):\n    return x\n")
    assert not function_end_reached("def f(x):\n    return x\n\npri")  # the last line may still grow
    assert function_end_reached("def f(x):\n    return x\n\nprint(f(1))\n")
    assert function_end_reached("def f(x):\n    return x\n\ndef f(x):\n")
