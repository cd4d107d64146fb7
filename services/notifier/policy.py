"""Who is invited to a thread: the best candidates, never twice, never the asker or a participant."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from shared.events import Candidate


def choose_invitees(
    candidates: Iterable[Candidate],
    *,
    already_invited: Collection[str],
    excluded: Collection[str],
    limit: int,
) -> list[Candidate]:
    """The candidates to invite now, best first, so a thread never has more than `limit` invitees."""
    room = limit - len(set(already_invited))
    if room <= 0:
        return []
    chosen: list[Candidate] = []
    seen = set(already_invited) | set(excluded)
    for candidate in sorted(candidates, key=lambda c: c.score, reverse=True):
        if candidate.person_id in seen:
            continue
        seen.add(candidate.person_id)
        chosen.append(candidate)
        if len(chosen) == room:
            break
    return chosen
