"""The prompt template and the code kept from a completion (the stop rule), on strings."""

from __future__ import annotations

import pytest

from pva_dagster.study.generation.prompts import (
    DEFAULT_TEMPLATE,
    build_prompt,
    extract_code,
    function_end_reached,
    truncate_at_function_end,
)

FUNCTION = "def f(x):\n    return x\n"


def test_prompt_is_the_studys_zero_shot_format():
    prompt = build_prompt("Write a function f. ", ["assert f(1) == 1", " assert f(2) == 2"])
    assert prompt == "Write a function f.\n\nassert f(1) == 1\nassert f(2) == 2\n\n# Solution:"
    assert build_prompt("T", ["a"], template="{tests} / {text}") == "a / T"
    assert DEFAULT_TEMPLATE.endswith("# Solution:")


def test_unknown_placeholder_is_named():
    with pytest.raises(ValueError, match="'problem'"):
        build_prompt("x", [], template="{problem}\n{tests}")


@pytest.mark.parametrize(
    "follow_up",
    [
        "print(f(2))\n",
        "assert f(1) == 1\n",
        "This function returns x.\n",
        "if __name__ == '__main__':\n",
        "```\n",
        "\n\n\n",
        "def f(x):\n",
    ],
    ids=["print", "assert", "prose", "main-guard", "closing-fence", "three-blank-lines", "redefinition"],
)
def test_stop_rule_fires_after_a_complete_function(follow_up):
    assert not function_end_reached(FUNCTION)
    assert function_end_reached(FUNCTION + "\n" + follow_up)


@pytest.mark.parametrize(
    "text",
    [
        FUNCTION + "\npri",  # the last line may still grow
        FUNCTION + "\n\ndef g(y):\n    return f(y)\n",  # a helper or a second function
        "import math\n\n" + FUNCTION + "\nclass A:\n    pass\n",
        FUNCTION + "\n# Example\n@decorator\ndef h():\n",
        "print('setup')\nassert True\n",  # no function yet: nothing to end
        "```python\n" + FUNCTION,  # an opening fence is not a closing one
        "def f(x):\n",  # no body yet
    ],
)
def test_stop_rule_lets_the_solution_go_on(text):
    assert not function_end_reached(text)


def test_truncate_keeps_what_precedes_the_stop_line():
    assert truncate_at_function_end(FUNCTION + "\nprint(f(2))\nprint(3)") == FUNCTION + "\n"
    assert (
        truncate_at_function_end(FUNCTION + "\n\ndef g(y):\n    pass\n")
        == FUNCTION + "\n\ndef g(y):\n    pass\n"
    )
    assert truncate_at_function_end("def f(x): return x\ndef f(x): return 2\n") == "def f(x): return x\n"


@pytest.mark.parametrize(
    ("completion", "kept"),
    [
        ("\n" + FUNCTION + "\nprint(f(2))\n", FUNCTION),
        ("Here it is:\n```python\n" + FUNCTION + "```\nThis returns x.", FUNCTION),
        ("```py\n" + FUNCTION, FUNCTION),  # fence never closed: ran to the token cap
        (
            "def is_prime(n):\n    return n > 1\n\n\ndef count(xs):\n    return sum(map(is_prime, xs))\n\n\nprint(1)\n",
            "def is_prime(n):\n    return n > 1\n\n\ndef count(xs):\n    return sum(map(is_prime, xs))\n",
        ),
        (  # the prompt repeated before the code: prose and asserts dropped, import and constant kept
            "Write f.\n\nassert f(1) == 1\n\n# Solution:\nimport math\nLIMIT = {\n    'a': 1}\n" + FUNCTION,
            "# Solution:\nimport math\nLIMIT = {\n    'a': 1}\n" + FUNCTION,
        ),
        (FUNCTION + "\n" + FUNCTION + "\n" + FUNCTION, FUNCTION),  # a repetition loop
        (FUNCTION + "\n# Example usage:\nprint(f(1))\n", FUNCTION),
    ],
    ids=["print", "chat-fence", "open-fence", "helper-first", "repeated-prompt", "loop", "trailing-comment"],
)
def test_extract_code_keeps_runnable_solution(completion, kept):
    code = extract_code(completion)
    assert code == kept
    compile(code, "<solution>", "exec")
