"""What a similarity floor on invitations does on a replay: who it drops, and whether they would have answered.

Each test question invites its top `invited` candidates whose closest answer is at least the
floor (the notifier's NOTIFIER_MIN_SIMILARITY); without a floor, simply its top `invited`. An
invitee "answered" when they answered the thread (`any`) at any time after the question.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.evaluation.replay import MatcherSystem, ReplayResult

FLOORS = (0.0, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)


def floor_table(
    result: ReplayResult, system: MatcherSystem, *, invited: int = 3, floors: Sequence[float] = FLOORS
) -> list[dict[str, float | int]]:
    """One row per floor: answer rates of the invitees it keeps and of those it drops, and what it costs."""
    rows = []
    for floor in floors:
        kept = dropped = kept_answered = dropped_answered = hits = empty = 0
        questions = 0
        for judged in result.judged:
            answerers = judged.relevant["any"]
            if not answerers:
                continue
            questions += 1
            ranking = judged.rankings[system.name]
            closeness = system.closeness.get(judged.question_id, {})
            plain = ranking[:invited]
            chosen = [p for p in ranking if closeness.get(p, 0.0) >= floor][:invited]
            for person in chosen:
                kept += 1
                kept_answered += person in answerers
            for person in set(plain) - set(chosen):
                dropped += 1
                dropped_answered += person in answerers
            hits += bool(set(chosen) & answerers)
            empty += not chosen
        rows.append({
            "floor": floor,
            "invited": kept,
            "answer_rate": kept_answered / kept if kept else 0.0,
            "dropped": dropped,
            "dropped_answer_rate": dropped_answered / dropped if dropped else 0.0,
            "any@3": hits / questions if questions else 0.0,
            "no_invitee": empty / questions if questions else 0.0,
        })
    return rows
