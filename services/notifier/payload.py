"""The `invitation.created` webhook body, with its one-sentence "why you"."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime

from services.notifier.models import Invitation
from shared.events import Candidate, Evidence, PostKind, Question, ScorePart, TrackRecord
from shared.webhooks import INVITATION_CREATED, InvitationCreated, InvitationData, WebhookEvidence, WebhookQuestion

__all__ = ["INVITATION_CREATED", "invitation_payload", "stored_why", "why_you"]

_VERBS = {PostKind.ANSWER: "answered", PostKind.QUESTION: "asked", PostKind.COMMENT: "commented on"}
# The parts of a score that say the person's posts are about this question (services/matcher/ranking.py).
_TOPICAL = (ScorePart.SIMILARITY, ScorePart.LEXICAL)


def _shorten(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + "…"


def _topic(evidence: Evidence) -> str:
    # Curly quotes: a title may hold an apostrophe ("don't"), and the quote must still end where it does.
    return f"“{evidence.title or _shorten(evidence.snippet)}”"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _facts(record: TrackRecord) -> dict[str, str]:
    """The sentences a track record supports, by the score part they explain; only counts above zero."""
    facts: dict[str, str] = {}
    if record.tags:
        top = record.tags[0]
        accepted = f", {top.accepted} of them accepted" if top.accepted else ""
        facts[ScorePart.TAGS] = f"you have {_count(top.answers, 'answer')} tagged {top.tag}{accepted}"
    if record.accepted:
        facts[ScorePart.ACCEPTED] = f"{record.accepted} of your {_count(record.answers, 'answer')} were accepted"
    if record.answers:
        facts[ScorePart.ANSWERS] = f"you have written {_count(record.answers, 'answer')}"
    if record.answered_nearby:
        facts[ScorePart.FEEDBACK] = (
            f"you answered {_count(record.answered_nearby, 'invitation')} to questions like this one"
        )
    if record.answers_last_30_days:
        facts[ScorePart.ACTIVITY] = f"you wrote {_count(record.answers_last_30_days, 'answer')} in the last 30 days"
    elif record.answers_last_90_days:
        facts[ScorePart.ACTIVITY] = f"you wrote {_count(record.answers_last_90_days, 'answer')} in the last 90 days"
    return facts


def why_you(candidate: Candidate) -> str:
    """One sentence of facts about the invitee: a post of theirs that matches, and their own counts.

    E.g. "You answered “Terraform plan wants to destroy the RDS instance” (accepted); you have 3
    answers tagged terraform, 2 of them accepted." Every clause is a post or a count of the
    person's (`Candidate.track_record`), never a reading of the score. When a part other than the
    posts' match weighed most (activity, say), the fact behind it comes first.
    """
    # Their closest answer if they have one among the evidence: answering is what they are asked to do.
    evidence = [e for e in candidate.evidence if e.kind is PostKind.ANSWER] or candidate.evidence
    post = None
    if evidence:
        best = max(evidence, key=lambda e: e.similarity)
        post = f"you {_VERBS[best.kind]} {_topic(best)}" + (" (accepted)" if best.accepted else "")
    facts = _facts(candidate.track_record) if candidate.track_record is not None else {}
    leading = _leading_fact(candidate.parts, facts)
    if leading is not None:
        sentence = facts[leading] + (f", and {post}" if post else "")
    elif post is not None:
        sentence = post + (f"; {facts[ScorePart.TAGS]}" if ScorePart.TAGS in facts else "")
    else:
        sentence = next(iter(facts.values()), "you were ranked among the people to ask")
    return sentence[0].upper() + sentence[1:] + "."


def _leading_fact(parts: Mapping[str, float], facts: Mapping[str, str]) -> str | None:
    """The part that weighed most, if it outweighs the posts' match and a fact of the person's explains it."""
    topical = max([parts.get(name, 0.0) for name in _TOPICAL] + [0.0])
    others = {name: value for name, value in parts.items() if name in facts and value > topical}
    return max(others, key=others.__getitem__) if others else None


def stored_why(invitation: Invitation) -> str:
    """An invitation's "why you" as it was sent; rebuilt from its evidence for one stored before it was kept."""
    if invitation.why is not None:
        return invitation.why
    evidence = tuple(Evidence.model_validate(e) for e in invitation.evidence)
    return why_you(Candidate(person_id=invitation.person_id, score=invitation.score, evidence=evidence))


def invitation_payload(
    *, invitation_id: str, question: Question, candidate: Candidate, created_at: datetime
) -> bytes:
    """The exact bytes every attempt of this invitation's webhook sends (and signs)."""
    body = InvitationCreated(
        timestamp=created_at.isoformat(),
        data=InvitationData(
            invitation_id=invitation_id,
            thread_id=question.thread_id,
            question=WebhookQuestion(
                post_id=question.post_id, title=question.title, url=question.url, excerpt=question.excerpt
            ),
            person_id=candidate.person_id,
            score=candidate.score,
            why=why_you(candidate),
            evidence=tuple(
                WebhookEvidence(
                    post_id=e.post_id, title=e.title, snippet=e.snippet, url=e.url,
                    similarity=e.similarity, kind=e.kind, accepted=e.accepted,
                )
                for e in candidate.evidence
            ),
            parts=candidate.parts,
            closeness=candidate.closeness,
            track_record=candidate.track_record,
        ),
    )
    return json.dumps(body.model_dump(mode="json"), ensure_ascii=False, separators=(",", ":")).encode()
