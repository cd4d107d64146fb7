"""How an evaluation is shown: a table on stdout, the JSON file, a Hit@k plot."""

from __future__ import annotations

import json
from pathlib import Path

from services.evaluation.evaluate import CURVE_KS, Evaluation
from services.evaluation.replay import RELEVANCES

METRICS = ("mrr", "p@1", "hit@5", "ndcg@10")


def table(evaluation: Evaluation) -> str:
    """A plain-text table: one row per system and relevance, then coverage, time and rank latency."""
    e = evaluation
    lines = [
        f"{e.dataset}: {e.n_test} test questions, coverage {e.coverage:.3f}, {e.seconds:.1f} s, "
        f"rank step p50 {e.rank_ms['p50']:.1f} ms, p95 {e.rank_ms['p95']:.1f} ms",
        f"{'system':<20} {'rel':<4} " + " ".join(f"{m:>8}" for m in METRICS) + f" {'n':>6}",
    ]
    for system, by_relevance in e.systems.items():
        for relevance in RELEVANCES:
            scores = by_relevance[relevance]
            values = " ".join(f"{scores[m]:>8.3f}" for m in METRICS)
            lines.append(f"{system:<20} {relevance:<4} {values} {scores['n']:>6}")
    if e.ceiling is not None:
        values = " ".join(f"{e.ceiling[m]:>8.3f}" for m in METRICS)
        lines.append(f"{'ceiling':<20} {'acc':<4} {values} {e.ceiling['n']:>6}")
        lines.append(
            "ceiling: expertmatch's features under one set of weights tuned in hindsight on these test questions' "
            f"accepted answerers; the accepted answerer was a candidate for {e.ceiling['in_pool']:.1%} of them"
        )
    return "\n".join(lines)


def write_json(evaluation: Evaluation, path: Path) -> None:
    path.write_text(json.dumps(evaluation.to_json(), indent=2) + "\n")


def plot(evaluation: Evaluation, path: Path) -> None:
    """Hit@k for k = 1..20, one line per system; solid for `acc`, dashed for `any`."""
    # Imported here: matplotlib is only needed when a plot is asked for.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 4.5))
    for index, (system, curves) in enumerate(evaluation.curves.items()):
        colour = f"C{index}"
        axes.plot(CURVE_KS, curves["acc"], color=colour, marker="o", markersize=3, label=f"{system} (accepted)")
        axes.plot(CURVE_KS, curves["any"], color=colour, linestyle="--", label=f"{system} (any answerer)")
    axes.set(
        xlabel="k (people ranked)",
        ylabel="Hit@k",
        title=f"{evaluation.dataset}: {evaluation.n_test} test questions",
        xticks=list(CURVE_KS),
        ylim=(0, 1),
    )
    axes.grid(alpha=0.3)
    # Beside the axes, never over the curves.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
