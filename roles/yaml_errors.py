"""A YAML syntax error in one line, as ``json_error`` (``esc_eval.roles.jsonl``) words a JSON one.

PyYAML's message spans several lines (context, the quoted source line, a caret); every
reader of a YAML file here (cards, personas, protocols, judge profiles, extraction prompts)
reports a broken file in one line that still says where: ``line 2, column 3``.

Examples:
    >>> import yaml
    >>> try:
    ...     yaml.safe_load("id: [\\n  - bad: :\\n")
    ... except yaml.YAMLError as exc:
    ...     print(yaml_error(exc))
    not valid YAML: expected the node content, but found '-' (line 2, column 3; while parsing a flow node)
"""

from __future__ import annotations

import yaml


def yaml_error(exc: yaml.YAMLError) -> str:
    """``exc`` in one line with 1-based positions: ``not valid YAML: PROBLEM (line L, column C; CONTEXT)``."""
    problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    notes = [f"line {mark.line + 1}, column {mark.column + 1}"] if mark is not None else []
    context = getattr(exc, "context", None)
    if context:
        notes.append(context)
    return f"not valid YAML: {problem}" + (f" ({'; '.join(notes)})" if notes else "")
