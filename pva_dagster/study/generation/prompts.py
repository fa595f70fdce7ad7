"""The zero-shot prompt of the study, and turning a completion back into runnable code.

Prompt (as in the seed study): ``{text}\\n\\n{tests}\\n\\n# Solution:`` with the asserts one a line. Small
models often keep writing after the function (a ``print`` of an example, prose, the asserts again, or a
repetition loop to the token cap), so generation stops at the end of the function (``function_end_reached``)
and the kept code is cut there as well (``truncate_at_function_end``, ``extract_code``).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

DEFAULT_TEMPLATE = "{text}\n\n{tests}\n\n# Solution:"
TEMPLATE_FIELDS = ("text", "tests")
FENCE_LINE = re.compile(r"^\s*```")
FENCED_BLOCK = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\n(.*?)(?:```|\Z)", flags=re.DOTALL)
DEF_LINE = re.compile(r"^(?:async\s+)?def\s+(\w+)")
ONE_LINE_BODY = re.compile(r"\)\s*(?:->[^:]+)?:\s*[^\s#]")  # def f(x): return x
# Top-level lines after a function that still belong to the solution: more functions (helpers), classes,
# imports, decorators and comments. Anything else at column 0 (print(, assert, prose, if __name__) ends it.
CONTINUES_SOLUTION = re.compile(r"^(?:(?:async\s+)?def\s|class\s|import\s|from\s|@|#)")
# Lines before the first function that are kept: imports, comments, decorators and NAME = constants.
KEPT_PREAMBLE = re.compile(r"^(?:import\s|from\s|#|@|[A-Za-z_]\w*\s*(?::[^=]+)?=[^=])")
# Three blank lines in a row after a function end it. (Two do not: PEP 8 puts two between top-level defs.)
MAX_BLANK_RUN = 3


def build_prompt(problem_text: str, test_list: Sequence[str], template: str = DEFAULT_TEMPLATE) -> str:
    """The study's zero-shot prompt: problem text, the asserts one a line, then ``# Solution:``."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = sorted(fields - set(TEMPLATE_FIELDS))
    if unknown:
        raise ValueError(
            f"prompt template has unknown placeholders {unknown}; allowed: {list(TEMPLATE_FIELDS)}"
        )
    return template.format(text=problem_text.strip(), tests="\n".join(t.strip() for t in test_list))


def format_for_model(tokenizer: Any, prompt: str, use_chat_template: bool) -> str:
    """The prompt as the model sees it: raw, or wrapped in the tokenizer's chat template as a user turn.

    A chat template usually writes the BOS token itself while the tokenizer adds one again when the text is
    encoded; the template's copy is dropped so the model sees exactly one.
    """
    if not use_chat_template:
        return prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"use_chat_template is set but the tokenizer {type(tokenizer).__name__} has no chat template"
        )
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    bos = tokenizer.bos_token
    adds_bos = bos is not None and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]
    return text[len(bos) :] if adds_bos and text.startswith(bos) else text


def _solution_end(lines: Sequence[str]) -> int | None:
    """Index of the first line that no longer belongs to the solution, or None while it may go on.

    The solution ends once a complete top-level function is followed by a top-level line that is not another
    def/class/import/decorator/comment, by a redefinition of a function already written (the start of a
    repetition loop), by a closing code fence, or by ``MAX_BLANK_RUN`` blank lines.
    """
    defined: set[str] = set()
    in_body = False  # a def has been seen and at least one line of its body
    blank_run = 0
    for index, line in enumerate(lines):
        if FENCE_LINE.match(line):
            if defined:
                return index
            continue  # an opening fence before the code
        if not line.strip():
            blank_run += 1
            if in_body and blank_run >= MAX_BLANK_RUN:
                return index
            continue
        blank_run = 0
        if line[0] in " \t":
            in_body = in_body or bool(defined)
            continue
        name = DEF_LINE.match(line)
        if name:
            if name.group(1) in defined:
                return index
            defined.add(name.group(1))
            in_body = in_body or bool(ONE_LINE_BODY.search(line))
            continue
        if in_body and not CONTINUES_SOLUTION.match(line):
            return index
    return None


def function_end_reached(text: str) -> bool:
    """True once the completion holds a whole function and has moved on (the generation stop rule).

    Only lines closed by a newline are judged: the last one may still be growing (``pri`` -> ``print``).
    """
    return _solution_end(text.split("\n")[:-1]) is not None


def truncate_at_function_end(text: str) -> str:
    """The completion up to (not including) the line that ended the solution; unchanged if none did."""
    lines = text.split("\n")
    end = _solution_end(lines)
    return text if end is None else "\n".join(lines[:end]) + "\n"


def _drop_preamble_prose(lines: list[str]) -> list[str]:
    """Drop what precedes the first top-level def/class except imports, comments and constants.

    Raw prompts end in ``# Solution:`` and the model sometimes repeats the problem text or the asserts first;
    those lines are prose (a syntax error) or asserts on a function not yet defined (a NameError).
    """
    start = next(
        (i for i, line in enumerate(lines) if re.match(r"^(?:(?:async\s+)?def|class)\s", line)), None
    )
    if start is None:
        return lines
    kept, keep_continuation = [], False
    for line in lines[:start]:
        if line[:1] in (" ", "\t") and keep_continuation:
            kept.append(line)
            continue
        keep_continuation = bool(KEPT_PREAMBLE.match(line))
        if keep_continuation or not line.strip():
            kept.append(line)
    return kept + lines[start:]


def extract_code(completion: str) -> str:
    """The code to run: the first fenced block if any, prose before the code dropped, cut where it ends."""
    fenced = FENCED_BLOCK.search(completion)
    text = fenced.group(1) if fenced else completion
    lines = _drop_preamble_prose(truncate_at_function_end(text).split("\n"))
    while lines and (not lines[-1].strip() or lines[-1].startswith("#")):
        lines.pop()  # "# Example usage:" and the like, left before the line that ended the solution
    return "\n".join(lines).strip("\n") + "\n"
