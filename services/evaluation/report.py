"""How an evaluation is shown: a table on stdout, the JSON file, a Hit@k plot."""

from __future__ import annotations

import json
from pathlib import Path

from services.evaluation.evaluate import CURVE_KS, Evaluation
from services.evaluation.replay import RELEVANCES

METRICS = ("mrr", "p@1", "hit@3", "hit@5", "ndcg@10")


def table(evaluation: Evaluation) -> str:
    """A plain-text table: one row per system and relevance, then the strata, the pool and the ceiling."""
    e = evaluation
    pools = ", ".join(f"{name} {share:.3f}" for name, share in e.in_pool.items())
    lines = [
        f"{e.dataset}: {e.n_test} test questions, coverage {e.coverage:.3f}, in_pool {pools}, {e.seconds:.1f} s, "
        f"rank step p50 {e.rank_ms['p50']:.1f} ms, p95 {e.rank_ms['p95']:.1f} ms",
        f"{'system':<20} {'rel':<4} " + " ".join(f"{m:>8}" for m in METRICS) + f" {'n':>6}",
    ]
    for system, by_relevance in e.systems.items():
        for relevance in RELEVANCES:
            scores = by_relevance[relevance]
            values = " ".join(f"{scores[m]:>8.3f}" for m in METRICS)
            lines.append(f"{system:<20} {relevance:<4} {values} {scores['n']:>6}")
    if e.strata:
        counts = next(iter(e.strata.values()))  # every system's strata hold the same questions
        labels = list(counts)
        lines.append("MRR (acc) by the accepted answerer's accepted answers before the question:")
        lines.append(f"{'':<25} " + " ".join(f"{label:>8}" for label in labels))
        lines.append(f"{'  questions':<25} " + " ".join(f"{counts[label]['n']:>8}" for label in labels))
        for system, strata in e.strata.items():
            lines.append(f"  {system:<23} " + " ".join(f"{strata[label]['mrr']:>8.3f}" for label in labels))
    for system, by_relevance in e.systems.items():
        if "expertmatch" in system:
            lines.append(
                f"{system}: at least one of the top 3 answered (any, hit@3) on {by_relevance['any']['hit@3']:.1%}"
            )
    if e.floors:
        lines.append(
            "expertmatch's top 3 under a similarity floor (NOTIFIER_MIN_SIMILARITY); answered = answered the thread:"
        )
        lines.append(
            f"{'floor':>7} {'invited':>8} {'answered':>9} {'dropped':>8} {'answered':>9} {'any@3':>7} {'none':>7}"
        )
        for row in e.floors:
            lines.append(
                f"{row['floor']:>7.2f} {row['invited']:>8} {row['answer_rate']:>9.1%} {row['dropped']:>8} "
                f"{row['dropped_answer_rate']:>9.1%} {row['any@3']:>7.1%} {row['no_invitee']:>7.1%}"
            )
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
