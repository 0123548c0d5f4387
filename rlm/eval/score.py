"""Scoring a model's reply to an OOLONG question, by the benchmark's rules.

1. The answer is the text after the reply's last ``:`` (the whole reply when it has none).
   Markdown emphasis and brackets (``*``, ``[``, ``]``, back ticks) are dropped, and so are
   surrounding quotes, whitespace and a final full stop — models bold or bracket answers, and
   that is not what is being measured.
2. Numbers score ``0.75 ** |gold - predicted|`` (exact: 1); an answer that is not a number
   scores 0.
3. Labels score 1 on an exact match (ignoring case), else 0.
4. Comparisons score 1 when the answer holds the gold phrase's key words (``more common``,
   ``less common`` or ``same frequency``) and no other phrase's, else 0: "Answer: location is
   more common than entity" is read as ``more common than``.

Numbers and labels go through :func:`rlm.scoring.score`, the project's OOLONG scoring.

Example:
    >>> score_reply("Answer: 12", 12), score_reply("Answer: 10", 12)
    (1.0, 0.5625)
    >>> score_reply("**Label:** Location.", "location")
    1.0
    >>> score_reply("Answer: entity is less common than location", "less common than")
    1.0
"""

from __future__ import annotations

from rlm.eval.questions import COMPARISONS
from rlm.scoring import score

__all__ = ["comparison_in", "extract_answer", "score_reply"]

_DROPPED = str.maketrans("", "", "*[]`")


def extract_answer(reply: str) -> str:
    """The answer part of a reply: after the last ``:``, cleaned (see the module's rule 1)."""
    answer = reply.rsplit(":", 1)[-1].translate(_DROPPED).strip()
    answer = answer.strip("\"'").strip()
    return answer[:-1].rstrip() if answer.endswith(".") else answer


def comparison_in(answer: str) -> str | None:
    """The comparison phrase an answer gives, if it gives exactly one."""
    text = " ".join(answer.casefold().split())
    found = [phrase for phrase in COMPARISONS if phrase.rsplit(" ", 1)[0] in text]
    return found[0] if len(found) == 1 else None


def score_reply(reply: str | None, gold: int | str) -> float:
    """How well ``reply`` answers a question whose right answer is ``gold``, from 0 to 1.

    Args:
        reply: The model's reply (``None``: no reply, scores 0).
        gold: The gold answer: a number, a label, or one of
            :data:`~rlm.eval.questions.COMPARISONS`.

    Returns:
        The score.
    """
    if reply is None:
        return 0.0
    answer = extract_answer(reply)
    if isinstance(gold, str) and gold in COMPARISONS:
        return 1.0 if comparison_in(answer) == gold else 0.0
    return score(answer, gold)
