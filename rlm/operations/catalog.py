"""Every built-in operation, one instance each.

The catalogue by concept:

- :mod:`~rlm.operations.numeric`: sum, product, min, max, mean, count, variance;
- :mod:`~rlm.operations.collection_ops`: sort, distinct, top_k, count_by, histogram, concat,
  filter, map (the last two use :mod:`~rlm.operations.expressions`);
- :mod:`~rlm.operations.text`: word_count, line_count, grep (:mod:`~rlm.operations.regex`);
- :mod:`~rlm.operations.pairwise`: pairs;
- :mod:`~rlm.operations.labels`: label_counts, label_stats (OOLONG-style aggregation);
- :mod:`~rlm.operations.lm`: llm_map, llm_classify, llm_summarize (language-model calls).

Operations are module-level classes holding no callables, so they pickle and can be shipped
to Ray actors.

Example:
    >>> sorted(op.name for op in builtin_operations())[:4]
    ['concat', 'count', 'count_by', 'distinct']
"""

from __future__ import annotations

from rlm.operations.base import Operation
from rlm.operations.collection_ops import (
    Concat,
    CountBy,
    Distinct,
    Filter,
    Histogram,
    Map,
    Sort,
    TopK,
)
from rlm.operations.labels import LabelCounts, LabelStats
from rlm.operations.lm import LLMClassify, LLMMap, LLMSummarize
from rlm.operations.numeric import Count, ExactSum, Max, Mean, Min, Product, Sum, Variance
from rlm.operations.pairwise import Pairs
from rlm.operations.text import Grep, LineCount, WordCount

__all__ = ["builtin_operations"]

_BUILTINS: tuple[type[Operation], ...] = (
    Sum,
    ExactSum,
    Product,
    Min,
    Max,
    Mean,
    Count,
    Variance,
    Sort,
    Distinct,
    TopK,
    CountBy,
    Histogram,
    Concat,
    Filter,
    Map,
    WordCount,
    LineCount,
    Grep,
    Pairs,
    LabelCounts,
    LabelStats,
    LLMMap,
    LLMClassify,
    LLMSummarize,
)


def builtin_operations() -> list[Operation]:
    """A new instance of every built-in operation, in catalogue order."""
    return [cls() for cls in _BUILTINS]
