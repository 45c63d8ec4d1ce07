"""Which words of successive hypotheses are settled, and where words already published sit in a
later, better decode. Plain strings in, counts out, like ``guards``.

Both the segmented stream (words committed before their segment ends) and capture's OpenAI Realtime
items (deltas sent before the final) publish words early and must later continue from a full decode
without repeating or skipping any.
"""

from __future__ import annotations

from collections.abc import Sequence

from echostream_shared.segmented.guards import norm_word


def agreed_length(current: Sequence[str], previous: Sequence[str]) -> int:
    """How many leading words two hypotheses share (compared without case and punctuation)."""
    same = 0
    for a, b in zip(current, previous, strict=False):
        if norm_word(a) != norm_word(b):
            break
        same += 1
    return same


def cut_short(words: Sequence[str]) -> int:
    """Index of the first word the decoder heard only the start of ("s-"), or ``len(words)``."""
    return next((i for i, word in enumerate(words) if word.endswith("-")), len(words))


def published_head(published: Sequence[str], decoded: Sequence[str]) -> int:
    """How many of ``decoded``'s first words the ``published`` words stand for.

    The published words match the head of the decode they are closest to (fewest word edits);
    among equally close heads, the one as long as the published words. Only heads are matched, so a
    misheard published word can never match a later word of the decode and skip the ones between.
    """
    if not published:
        return 0
    a = [norm_word(w) for w in published]
    b = [norm_word(w) for w in decoded]
    # row[k]: word edits between the published words so far and the decode's first k words
    row = list(range(len(b) + 1))
    for word in a:
        previous, row = row, [row[0] + 1]
        for k, other in enumerate(b, start=1):
            row.append(min(previous[k] + 1, row[k - 1] + 1, previous[k - 1] + (word != other)))
    return min(range(len(b) + 1), key=lambda k: (row[k], abs(k - len(a))))
