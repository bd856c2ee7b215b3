"""Mixed-precision search: choose (wbits, abits) per layer under a hardware budget.

    space = SearchSpace.for_graph(graph, qtypes)            # micoc.search.space
    cs = constraints_from_text(graph, target, space, ["bops=0.3"])
    ev = Evaluator(graph, space, EvalData.from_arrays(x_val, y_val, ...))
    result = run_search(graph, space, cs, ev, searcher="mico", evals=32)

`graph` is the canonicalized float graph (BatchNorm folded), exactly what
`micoc compile` quantizes. See docs/architecture.md, "Search".
"""

from micoc.search.constraints import (
    Constraint,
    ConstraintSet,
    constraints_from_text,
    parse_constraint,
)
from micoc.search.engine import Record, SearchResult, run_search
from micoc.search.evaluators import EvalData, EvalSettings, Evaluator, make_evaluator, top1
from micoc.search.searchers import (
    SEARCHERS,
    Searcher,
    available_searchers,
    make_searcher,
    register_searcher,
)
from micoc.search.space import SearchSpace, default_qtypes, parse_qtypes

__all__ = [
    "SEARCHERS", "Constraint", "ConstraintSet", "EvalData", "EvalSettings", "Evaluator", "Record",
    "SearchResult", "SearchSpace", "Searcher", "available_searchers", "constraints_from_text",
    "default_qtypes", "make_evaluator", "make_searcher", "parse_constraint", "parse_qtypes",
    "register_searcher", "run_search", "top1",
]
