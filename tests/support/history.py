"""A small company history for end-to-end tests: three colleagues with clear areas, as backfill."""

from __future__ import annotations

from tests.support.waiting import until

# Three colleagues with clear areas; the asker has posted too, and must never be invited.
HISTORY = [
    ("k1", "question", "dana", "Pods stuck in CrashLoopBackOff after the base image bump",
     "Since this morning our checkout pods restart every minute with CrashLoopBackOff."),
    ("k1a", "answer", "kim", None,
     "The new base image runs as a non-root user, so the liveness probe cannot read the socket. "
     "Set runAsUser in the pod securityContext and the probe passes again; kubectl describe pod "
     "shows the probe failure in the events."),
    ("k2", "question", "lee", "How do I raise the memory limit of a Kubernetes deployment?",
     "Our deployment gets OOMKilled under load. Where are resource requests and limits set?"),
    ("k2a", "answer", "kim", None,
     "Set resources.limits.memory in the container spec of the Deployment manifest and apply it; "
     "Kubernetes restarts the pods with the new limit. Check kubectl top pods first."),
    ("k3", "question", "ravi", "Helm rollback left the ingress controller without TLS secrets",
     "After helm rollback the ingress serves the default certificate."),
    ("k3a", "answer", "kim", None,
     "helm rollback does not restore secrets created by cert-manager; re-run the Certificate "
     "resource or copy the secret back into the namespace, then restart the ingress pods."),
    ("p1", "question", "kim", "When is the payroll cut-off for overtime in December?",
     "I worked two weekends in November, when do I need to submit the overtime sheet?"),
    ("p1a", "answer", "maria", None,
     "Payroll closes overtime on the 20th in December because of the holidays. Submit the sheet in "
     "the HR portal under Time and Absence and your manager approves it there."),
    ("p2", "question", "lee", "Is the holiday allowance paid with the May salary?",
     "New here, I was told holiday pay comes once a year."),
    ("p2a", "answer", "maria", None,
     "Yes, the 8% holiday allowance is paid with the May payroll run; the payslip shows it as a "
     "separate line. Leavers get it pro rata with their final salary."),
    ("s1", "question", "dana", "Which SQL index helps a slow ORDER BY created_at query?",
     "Our orders query sorts by created_at and filters by customer, and takes seconds."),
    ("s1a", "answer", "ravi", None,
     "A composite btree index on (customer_id, created_at) lets PostgreSQL read rows already in "
     "order; check with EXPLAIN ANALYZE that the sort node disappears."),
]


def history_posts() -> list[dict]:
    """HISTORY as ingest API posts, flagged backfill so that its questions invite nobody."""
    posts = []
    for post_id, kind, author, title, body in HISTORY:
        thread = post_id.rstrip("a")
        posts.append({
            "id": post_id, "thread_id": thread, "author_id": author, "kind": kind, "title": title,
            "body": body, "backfill": True, "accepted": kind == "answer",
            "created_at": "2026-06-01T10:00:00Z",
        })
    return posts


async def subscribe_and_index_history(http, system, receiver, *, headers, timeout: float = 120.0) -> dict:
    """A webhook subscription to `receiver`, then the history posted and waited for until indexed; returns the
    subscription (its secret included)."""
    created = await http.post(f"{system.url('notifier')}/v1/subscriptions", headers=headers, json={"url": receiver.url})
    assert created.status_code == 201, created.text
    answer = await http.post(f"{system.url('ingest')}/v1/posts/batch", headers=headers, json={"posts": history_posts()})
    assert answer.status_code == 202, answer.text

    async def indexed():
        stats = await http.get(f"{system.url('matcher')}/v1/index/stats", headers=headers)
        return stats.json()["contributions"] >= len(HISTORY)

    await until(indexed, timeout=timeout, what="the history indexed")
    return created.json()
