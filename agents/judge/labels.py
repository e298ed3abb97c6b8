"""Judge label parsers: a judge reply's text -> a label 0..4, or ``NO_LABEL`` (-1) when it holds none.

A profile names its parser (``JudgeProfile.parse_rule``): ``esc_rank`` reproduces ESC-Eval's
rule quirk for quirk; ``label`` reads what a reply states as its score.
"""

from __future__ import annotations

import re
from collections.abc import Callable

NO_LABEL = -1
MAX_LABEL = 4
LABELS = range(0, MAX_LABEL + 1)
"""The judge's scale, 0..4: every parse rule reads a label on it (ESC-RANK's), every report scales it by ``POINTS``."""
POINTS = 100 / MAX_LABEL
"""Points per label step: ESC-Eval's leaderboard number is mean(label) / 4 × 100, i.e. mean(label) × 25."""


def to_points(mean_label: float) -> float:
    """A mean label on the 0..4 scale as ESC-Eval's 0-100 leaderboard number.

    >>> to_points(3)
    75.0
    """
    return mean_label * POINTS


def parse_esc_rank(text: str) -> int:
    """ESC-Eval's rule, quirks included: try '0'..'4' in order; the first that occurs anywhere wins.

    So ``"4 out of 4 ... 0"`` is 0 and ``"10"`` is 0; no digit 0-4 at all is -1.
    """
    for label in ("0", "1", "2", "3", "4"):
        if label in text:
            return int(label)
    return NO_LABEL


_AMBIGUOUS = object()
_FULLWIDTH = str.maketrans("０１２３４５６７８９：／＊", "0123456789:/*")
_W = "0-9A-Za-z_"  # ASCII word characters: CJK text right after a digit ("3分") is allowed
_DIGIT = rf"(?<![{_W}.])(?P<d>[0-4])(?![{_W}])"
_OFF_SCALE = rf"(?<![{_W}.])(?P<d>[5-9]|[0-9]{{2,}})(?![{_W}])"  # a number that cannot be a label
# "(0-4)", "on a scale of 0 to 4", "from 0 to 4", "0到4分": the scale, not an answer.
_SCALE = re.compile(
    r"\(?[ \t]*(?:(?:on[ \t]+)?a[ \t]+scale[ \t]+(?:of|from)[ \t]+|from[ \t]+|between[ \t]+|范围[ \t]*)?"
    r"(?<![0-9.])0[ \t]*(?:-|–|—|~|to|到|至)[ \t]*4(?![0-9])(?:[ \t]*分)?[ \t]*\)?",
    re.IGNORECASE,
)
# A list-item marker at the start of a line: "0: ...", "- 3: ...", "**2.** ...", "Score 1: ...".
_MARKER = re.compile(
    r"^(?P<lead>[ \t]*(?:[-*•>][ \t]*)?(?:\*\*)?[ \t]*(?:score[ \t]*)?)(?P<d>[0-4])[ \t]*(?:\*\*)?[ \t]*"
    r"(?P<sep>[:：.)、])(?![.…])[ \t]*(?:\*\*)?[ \t]*(?=\S)",
    re.IGNORECASE | re.MULTILINE,
)
_KEYWORD = (
    r"(?<![A-Za-z])(?:final[ \t]+)?(?:overall[ \t]+)?"
    r"(?:scores?|ratings?|grade|verdict|(?:final[ \t]+)?answer|评分|分数|得分|打分|分值|最终得分)"
)
_FILLER = r"(?:[ \t]+(?:for|of|on|in)[ \t]+[A-Za-z][A-Za-z '’-]{0,40}?)?"
_LINK = (
    r"[ \t*_]*(?:[:：=]|is|was|would[ \t]+be|should[ \t]+be|will[ \t]+be|of|为|是|:)?"
    r"[ \t*_\"'“”]*(?:an?[ \t]+)?[ \t*_\"'“”]*"
)
_VERB = (
    r"(?<![A-Za-z])(?:give|giving|gave|rate|rating|rated|assign|assigning|award|awarding|scored?|scoring)[ \t]+"
    r"(?:(?:it|this|that|them|(?:the|this)[ \t]+[A-Za-z]+)[ \t]+)?(?:as[ \t]+)?(?:an?[ \t]+)?"
    r"(?:(?:score|rating)[ \t]+of[ \t]+)?[*_\"'“”]*"
)
_TIERS: tuple[tuple[re.Pattern[str], ...], ...] = (
    # 1. an explicit score statement: "Score: 3", "the rating is **2**", "I'd give it a 3", "评分：3", "3分"
    (
        re.compile(_KEYWORD + _FILLER + _LINK + _DIGIT, re.IGNORECASE),
        re.compile(_KEYWORD + _FILLER + _LINK + _OFF_SCALE, re.IGNORECASE),  # "Score: 5": ambiguous
        re.compile(_VERB + _DIGIT, re.IGNORECASE),
        re.compile(_DIGIT + r"[ \t]*分(?!钟)"),
    ),
    # 2. "3/4", "3 out of 4"
    (re.compile(_DIGIT + r"(?=[ \t]*(?:/|out[ \t]+of)[ \t]*4(?![0-9]))", re.IGNORECASE),),
    # 3. a bold label that is not a list marker: "**3**"
    (re.compile(r"(?:\*\*|__)[ \t]*" + _DIGIT + r"[ \t]*(?:\*\*|__)(?![ \t]*[:：.)][ \t]*\S)"),),
    # 4. a line that is only the label: "3", "(3)", "3."
    (re.compile(r"^[ \t>#*_`\"'(\[]*" + _DIGIT + r"[ \t*_`\"')\].。!]*$", re.MULTILINE),),
    # 5. a line ending in "…: 3" ("Fluency: 3"), or the reply ending in a sentence then a lone label
    (
        re.compile(r"[:：][ \t*_\"']*" + _DIGIT + r"[ \t*_\"'.。!]*$", re.MULTILINE),
        re.compile(r"(?:^|[.!?。！？][ \t]+|\n)[ \t*_\"']*" + _DIGIT + r"[ \t*_\"'.。!]*\s*\Z"),
    ),
)
# What follows a candidate digit and makes it something other than a clean 0..4 label.
_AFTER_RANGE = re.compile(r"[ \t]*(?:-|–|—|~|to|or|and|或|到|至)[ \t]*(?:an?[ \t]+)?[0-4](?![0-9])", re.IGNORECASE)
_AFTER_SCALE = re.compile(r"[ \t*_]*\(?[ \t]*(?:/|out[ \t]+of)[ \t]*(\d+)", re.IGNORECASE)
_AFTER_DECIMAL = re.compile(r"\.(\d+)")


def _value(text: str, match: re.Match[str]) -> object:
    """The label at ``match``'s digit, or ``_AMBIGUOUS`` for "3-4", "3 or 4", "3.5", "3/5"."""
    if int(match.group("d")) not in LABELS:
        return _AMBIGUOUS
    end = match.end("d")
    decimal = _AFTER_DECIMAL.match(text, end)
    if decimal:
        if set(decimal.group(1)) != {"0"}:
            return _AMBIGUOUS
        end = decimal.end()
    if _AFTER_RANGE.match(text, end):
        return _AMBIGUOUS
    scale = _AFTER_SCALE.match(text, end)
    if scale and scale.group(1) != "4":
        return _AMBIGUOUS
    return int(match.group("d"))


_RUBRIC_LINE = re.compile(r"^[ \t]*(?:[-*•>][ \t]*)?(?:\*\*)?[ \t]*[0-4][ \t]*(?:\*\*)?[ \t]*[:：]", re.MULTILINE)
"""A line that starts as a rubric line does (``0: ...``, ``- **1**: ...``), with or without text after it."""


def echoes_rubric(text: str) -> bool:
    r"""Whether a judge reply repeats the rubric: two or more lines starting ``N:`` (N in 0..4).

    A model that continues its prompt instead of answering writes ``0: The supporter's
    replies are largely unreadable...\n1:``; ESC-Eval's rule reads such a reply as label 0,
    ours as no label unless it also states one (``Score: 3``).

    Examples:
        >>> echoes_rubric("0: The replies are largely unreadable.\n1:")
        True
        >>> echoes_rubric("3: There are no apparent issues.")
        False
    """
    return len(_RUBRIC_LINE.findall(text.translate(_FULLWIDTH))) >= 2


def _drop_list_markers(text: str) -> tuple[str, list[int]]:
    """Remove list-item markers ("0: ...", "1. ...") so an echoed rubric or a numbered list is not a label.

    Returns the text and, when the reply has exactly one such line (``3: text``
    or ``3. text``: the judge citing the rubric line it picked) and does not echo
    the rubric (``echoes_rubric``: "0: text" then a bare "1:"), that ``N``.
    """
    markers = list(_MARKER.finditer(text))
    cited = [int(markers[0].group("d"))] if len(markers) == 1 and not echoes_rubric(text) else []
    return _MARKER.sub(lambda m: m.group("lead"), text), cited


_PLAIN = re.compile(r"[ \t\n]*(?:score|rating)[ \t]*:[ \t]*([0-4])\.?[ \t\n]*", re.IGNORECASE)
"""A reply that is nothing but a score line, as the default profile asks: read without the tiers below."""


def parse_label(text: str) -> int:
    """Our robust rule: the last explicit label in the reply, or -1 when there is none or it is ambiguous.

    Tiers, strongest first; the first tier with any candidate decides, and within
    it the last candidate wins (a judge that revises itself means the revision):

    1. a score statement: ``Score: 3``, ``Final answer: 2``, ``I'd rate it a 4``, ``评分：3``, ``3分``;
    2. ``3/4`` or ``3 out of 4``;
    3. a bold label ``**3**``;
    4. a rubric line cited alone: ``3: There are no apparent issues`` (not when the reply echoes the rubric: ``echoes_rubric``);
    5. a line holding only the label: ``3``;
    6. a line ending ``...: 3``, or the reply ending in a lone label after a sentence.

    The scale itself ("0-4", "from 0 to 4") and list markers (an echoed rubric,
    numbered reasons) are ignored, and so are numbers not in those shapes
    ("5 rounds", "2 suggestions"). A winning candidate that is a range ("3-4",
    "3 or 4"), a fraction ("3.5") or off the scale ("Score: 5", "3/5", "3 out of
    10") makes the reply ambiguous: -1.
    """
    plain = _PLAIN.fullmatch(text)
    if plain:
        return int(plain.group(1))
    return _parse_tiers(text)


def _parse_tiers(text: str) -> int:
    text = text.translate(_FULLWIDTH)
    text = _SCALE.sub(" ", text)
    text, cited = _drop_list_markers(text)
    tiers: list[list[object]] = []
    for index, patterns in enumerate(_TIERS):
        found = sorted((m.start("d"), _value(text, m)) for p in patterns for m in p.finditer(text))
        tiers.append([value for _, value in found])
        if index == 2:
            tiers.append(list(cited))
    for candidates in tiers:
        if candidates:
            last = candidates[-1]
            return last if isinstance(last, int) else NO_LABEL  # the one non-int candidate is _AMBIGUOUS
    return NO_LABEL


#: Parse rule name -> parser.
PARSE_RULES: dict[str, Callable[[str], int]] = {"esc_rank": parse_esc_rank, "label": parse_label}


__all__ = ["LABELS", "MAX_LABEL", "NO_LABEL", "PARSE_RULES", "POINTS", "echoes_rubric", "parse_esc_rank", "parse_label", "to_points"]
