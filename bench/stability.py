"""Partial stability: the share of the words a stream showed that a later display took back.

One definition for every system, computed from the sequence of *displayed transcripts* of one
stream in arrival order (what a caption view would show after each update: for EchoStream the
finals so far plus the latest partial of each open segment, for WhisperLiveKit its committed text
plus its buffer). Each display is compared with the next one on normalized words
(``speech_corpus.normalize``):

* a word of the next display that the alignment does not match in this one is *shown* (new);
* a word of this display that the alignment does not keep in the next one is *retracted*.

The two displays' common text, up to the last word boundary before they differ, is kept as is and
not even normalized; difflib aligns only the rest. A long transcript that grows or changes at its
end thus costs little (about 5,000 updates of a 1,500-word transcript in well under a second).
Normalizing the differing tails apart from the shared head changes nothing for words (the
normalization is per word) except a bracketed tag cut by the boundary, the same way in both
displays. The first display's words are all shown; the last display retracts nothing. ``retracted_share`` is
retracted / shown: 0 for a stream that only ever appends, up to 1 when every shown word is later
taken back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from difflib import SequenceMatcher

from speech_corpus import normalize

Stability = dict[str, float | int | None]


def words(text: str) -> list[str]:
    return normalize(text).split()


def common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    """How many leading words ``a`` and ``b`` share."""
    size = min(len(a), len(b))
    index = 0
    while index < size and a[index] == b[index]:
        index += 1
    return index


def change(before: Sequence[str], after: Sequence[str]) -> tuple[int, int]:
    """(words of ``after`` that are new, words of ``before`` that ``after`` does not keep)."""
    skip = common_prefix(before, after)
    old, new = before[skip:], after[skip:]
    if not old or not new:
        return len(new), len(old)
    matcher = SequenceMatcher(None, old, new, autojunk=False)
    kept = sum(block.size for block in matcher.get_matching_blocks())
    return len(new) - kept, len(old) - kept


def shared_head(a: str, b: str) -> int:
    """A word boundary (index) at or before the first character where ``a`` and ``b`` differ."""
    low, high = 0, min(len(a), len(b))
    while low < high:  # binary search on slices: string comparison runs in C
        middle = (low + high + 1) // 2
        if a[low:middle] == b[low:middle]:
            low = middle
        else:
            high = middle - 1
    if (low == len(a) or a[low].isspace()) and (low == len(b) or b[low].isspace()):
        return low
    return max(a.rfind(" ", 0, low), 0)


def text_change(before: str, after: str) -> tuple[int, int]:
    """``change`` of two displayed texts, normalizing only what follows their shared head."""
    head = shared_head(before, after)
    return change(words(before[head:]), words(after[head:]))


def retraction(displays: Iterable[str]) -> Stability:
    """``words_shown``, ``words_retracted``, ``retracted_share`` (None if nothing was shown) and
    ``updates`` (displays seen) of one stream's displayed transcripts, in arrival order."""
    shown = retracted = updates = 0
    previous = ""
    for display in displays:
        added, removed = text_change(previous, display)
        shown += added
        retracted += removed
        updates += 1
        previous = display
    return {
        "words_shown": shown,
        "words_retracted": retracted,
        "retracted_share": retracted / shown if shown else None,
        "updates": updates,
    }
