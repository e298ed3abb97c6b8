"""Filters a built card must pass: no personal identifiers, no near-duplicate of an earlier card.

Personal identifiers are found by pattern (e-mail addresses, phone numbers, URLs, street
addresses, self-introductions with a name, in English and Chinese). Patterns miss some and
flag a few false positives; the extraction prompt also asks the model to leave names out,
and every card a filter drops is listed in the build report with the identifier's kind.

Near-duplicates are found with MinHash and locality-sensitive hashing (``datasketch``) over
character 3-shingles of the card text, so it works for Chinese (no word boundaries) as well as
English; a card whose estimated Jaccard similarity to an earlier kept card reaches the
threshold is dropped, so the first of a group is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from datasketch import MinHash, MinHashLSH

PII_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"),
    "url": re.compile(r"\bhttps?://\S+|\bwww\.\S+", re.IGNORECASE),
    "phone": re.compile(r"(?<![\dA-Za-z])\+?\(?\d(?:[\s().-]{0,2}\d){8,}(?![\dA-Za-z])"),
    "address": re.compile(
        r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Boulevard|Blvd|Drive|Dr|Court|Ct|Way)\b\.?"
        r"|[\u4e00-\u9fff]{2,}(?:路|街|道)\d+号"),
    "name": re.compile(r"\b(?:[Mm]y name is|I am called|I'm called|call me)\s+[A-Z][a-z]+|我叫[\u4e00-\u9fff]{2,3}|名叫[\u4e00-\u9fff]{2,3}"),
}
"""Identifier kind -> pattern. A phone number is 9+ digits possibly split by spaces, dots, dashes, brackets."""

PII_POLICIES = ("reject", "scrub")
SCRUBBED = "[removed]"


def personal_identifiers(text: str) -> list[str]:
    """The kinds of identifier found in ``text``, in ``PII_PATTERNS`` order (empty when clean)."""
    return [kind for kind, pattern in PII_PATTERNS.items() if pattern.search(text)]


def scrub(text: str) -> str:
    """``text`` with every identifier replaced by ``[removed]``."""
    for pattern in PII_PATTERNS.values():
        text = pattern.sub(SCRUBBED, text)
    return text


def shingles(text: str, size: int = 3) -> set[str]:
    """Character ``size``-grams of the text with case and whitespace normalised."""
    normal = " ".join(text.lower().split())
    return {normal[i:i + size] for i in range(max(1, len(normal) - size + 1))}


@dataclass
class NearDuplicates:
    """Keeps the first of each group of similar texts: ``seen(key, text)`` returns the earlier key it repeats, or None.

    Args:
        threshold: Jaccard similarity (0-1) from which two texts count as duplicates.
        num_perm: MinHash permutations; more is a finer estimate, slower.
    """

    threshold: float = 0.8
    num_perm: int = 128
    _lsh: MinHashLSH = field(init=False)
    _hashes: dict[str, MinHash] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {self.threshold}")
        # LSH needs at least two bands, which very high thresholds leave no room for; a lower LSH
        # threshold only finds more candidates, and ``seen`` compares the estimate with the real one
        self._lsh = MinHashLSH(threshold=min(self.threshold, 0.9), num_perm=self.num_perm)

    def seen(self, key: str, text: str) -> str | None:
        minhash = MinHash(num_perm=self.num_perm, seed=1)
        minhash.update_batch([s.encode("utf-8") for s in shingles(text)])
        # LSH finds candidates; the estimate decides (LSH alone lets some pairs below the threshold through)
        for other in sorted(self._lsh.query(minhash)):
            if minhash.jaccard(self._hashes[other]) >= self.threshold:
                return other
        self._lsh.insert(key, minhash)
        self._hashes[key] = minhash
        return None
