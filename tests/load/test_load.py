"""Load, end to end: many concurrent starts and clicks against the stack as real processes.

One stack for the module (local server, SMTP sink, two workers, both
functions), all on 127.0.0.1, with the production task lease (60 s), so a
lease never lapses just because a loaded 2-core machine is slow. Clients are
48 threads with keep-alive sessions. Every wait is bounded; the durations and
the CPU seconds each process used are printed in the terminal summary
("load measurements").

Counts come from the public API (status) and the relay (the inbox and the
sink's log, which has one line per message received, duplicates included).
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from support.api import Api, Click, Target, token_of, tokens_on_page, unique
from support.sink import inbox_count, inbox_messages, sink_deliveries
from support.stacks import track

from devstack.smtpsink import links_in
from devstack.stack import Stack, wait_until

from .conftest import cpu_delta, cpu_seconds, session

THREADS = 48
DISTINCT = 800
STARTS = 1000
DECIDED = 500
DOUBLE_CLICKS = DECIDED * 20 // 100
CONFLICTING = DECIDED * 5 // 100

#: Bounds (seconds); the measured durations are reported, these only stop a hung run.
STARTS_WITHIN = 120.0
EMAILS_WITHIN = 240.0
DONE_WITHIN = 180.0

_ID = re.compile(r"load-[0-9a-f]{12}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = track(Stack(tmp_path_factory.mktemp("load"), signing_key=secrets.token_urlsafe(48)))
    try:
        s.start(workers=2)
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def api(stack: Stack) -> Api:
    return Api(Target.local(stack))


def post_json(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    r = session().post(url, json=body, timeout=30)
    return r.status_code, r.json()


def get_status(api: Api, workflow_id: str) -> tuple[int, Any]:
    r = session().get(api.start_url, params={"workflow_id": workflow_id}, timeout=30)
    return r.status_code, r.json()


def workflow_of(message: EmailMessage) -> str:
    match = _ID.search(str(message["Subject"]))
    assert match, message["Subject"]
    return match.group()


@dataclass
class Burst:
    ids: list[str]
    bodies: dict[str, dict[str, Any]]
    #: (workflow id, HTTP status, JSON answer) for each of the STARTS requests, in send order.
    answers: list[tuple[str, int, Any]]
    #: Stored name -> message, and each workflow's messages.
    messages: dict[str, EmailMessage]
    by_workflow: dict[str, list[EmailMessage]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def burst(stack: Stack, api: Api, measure: Callable[[str], None]) -> Burst:
    """1,000 concurrent starts over 800 ids (200 repeats, shuffled in among the firsts),
    then every first email, each counted once."""
    rng = random.Random(1000)
    ids = [unique("load") for _ in range(DISTINCT)]
    bodies = {wf: api.request_body(wf) for wf in ids}
    plan = ids + rng.choices(ids, k=STARTS - DISTINCT)
    rng.shuffle(plan)

    cpu0, t0 = cpu_seconds(stack), time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        answers = [
            (wf, *a)
            for wf, a in zip(plan, pool.map(lambda wf: post_json(api.start_url, bodies[wf]), plan), strict=True)
        ]
    t1 = time.monotonic()
    assert t1 - t0 < STARTS_WITHIN
    measure(f"{STARTS} starts ({DISTINCT} ids, {THREADS} threads): {t1 - t0:.1f} s = {STARTS / (t1 - t0):.0f}/s; "
            f"{cpu_delta(cpu0, cpu_seconds(stack))}")  # fmt: skip

    assert stack.sink is not None
    cpu1 = cpu_seconds(stack)
    wait_until(
        lambda: inbox_count(stack.inbox) >= DISTINCT, timeout=EMAILS_WITHIN, interval=0.5, what=f"{DISTINCT} emails"
    )
    t2 = time.monotonic()
    measure(f"{DISTINCT} first emails: {t2 - t1:.1f} s after the last start = {DISTINCT / (t2 - t1):.1f}/s; "
            f"{cpu_delta(cpu1, cpu_seconds(stack))}")  # fmt: skip
    time.sleep(2.0)  # room for a stray second copy to show up before counting
    messages = inbox_messages(stack.inbox)
    by_workflow: dict[str, list[EmailMessage]] = defaultdict(list)
    for m in messages.values():
        by_workflow[workflow_of(m)].append(m)
    return Burst(ids, bodies, answers, messages, dict(by_workflow))


def test_1000_concurrent_starts_make_exactly_800_runs_and_800_emails(
    stack: Stack, api: Api, burst: Burst, measure: Callable[[str], None]
) -> None:
    # Every start was accepted, and each answer is its run's status.
    codes = Counter(status for _, status, _ in burst.answers)
    assert codes == {202: STARTS}, codes
    for wf, _, body in burst.answers:
        assert body == {"workflow_id": wf, "status": "pending"}, (wf, body)

    # One email per run (one approver each), none for anything else.
    assert sorted(burst.by_workflow) == sorted(burst.ids)
    assert {wf: len(ms) for wf, ms in burst.by_workflow.items() if len(ms) != 1} == {}
    for wf, [message] in burst.by_workflow.items():
        assert str(message["To"]) == "alice@example.com"
        assert links_in(message).keys() == {"approve", "reject"}, wf

    # The relay received each message once: no run sent a second copy (even one the sink dropped).
    assert sink_deliveries(stack) == (DISTINCT, 0)

    # The status API knows exactly these 800 runs, all waiting.
    t0 = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        statuses = list(pool.map(lambda wf: get_status(api, wf), burst.ids))
    measure(f"{DISTINCT} status reads: {time.monotonic() - t0:.1f} s")
    assert all(s == (202, {"workflow_id": wf, "status": "pending"}) for wf, s in zip(burst.ids, statuses, strict=True))

    # A repeat now, after the fact, is still the same run: no new email.
    again = [post_json(api.start_url, burst.bodies[wf]) for wf in burst.ids[:20]]
    assert all(a == (202, {"workflow_id": wf, "status": "pending"}) for wf, a in zip(burst.ids, again, strict=False))
    time.sleep(1.0)
    assert sink_deliveries(stack) == (DISTINCT, 0)


def submit(api: Api, click: Click) -> tuple[int, str]:
    r = session().post(api.unblock_url, data={"token": click.token, "comment": click.comment}, timeout=30)
    return r.status_code, r.text


def page_tokens(link: str) -> dict[str, str]:
    """The Approve and Reject tokens the decision page offers (``Api.page_tokens`` over this thread's session)."""
    return tokens_on_page(session().get(link, timeout=30).text)


def test_500_decisions_with_double_and_conflicting_clicks_are_each_applied_once(
    stack: Stack, api: Api, burst: Burst, measure: Callable[[str], None]
) -> None:
    rng = random.Random(500)
    chosen = burst.ids[:DECIDED]
    untouched = burst.ids[DECIDED:]
    links = {wf: links_in(burst.by_workflow[wf][0]) for wf in chosen}

    # Open each emailed link (the page offers both decisions), as a person would.
    t0 = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        pages = dict(zip(chosen, pool.map(lambda wf: page_tokens(links[wf]["approve"]), chosen), strict=True))
    measure(f"{DECIDED} decision pages: {time.monotonic() - t0:.1f} s")
    for wf in chosen:
        assert pages[wf].keys() == {"approve", "reject"}, wf
        # the page's approve token is the emailed one's claims, re-signed: same link target
        assert token_of(links[wf]["approve"]).split(".")[0] == pages[wf]["approve"].split(".")[0]

    doubles = set(rng.sample(chosen, DOUBLE_CLICKS))
    conflicting = set(rng.sample(chosen, CONFLICTING))
    groups: list[list[Click]] = []
    for i, wf in enumerate(chosen):
        first = rng.choice(["approve", "reject"])
        other = "reject" if first == "approve" else "approve"
        group = [Click(wf, first, f"#{i} {first}", pages[wf][first])]
        if wf in doubles:
            group.append(Click(wf, first, f"#{i} {first} again", pages[wf][first]))
        if wf in conflicting:
            group.append(Click(wf, other, f"#{i} {other} instead", pages[wf][other]))
        rng.shuffle(group)  # which of a request's clicks lands first is up to the race
        groups.append(group)
    rng.shuffle(groups)
    clicks = [c for g in groups for c in g]  # a request's clicks are adjacent: they run at the same time

    cpu0, t1 = cpu_seconds(stack), time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        replies = list(pool.map(lambda c: submit(api, c), clicks))
    t2 = time.monotonic()
    measure(f"{len(clicks)} clicks on {DECIDED} requests ({DOUBLE_CLICKS} double, {CONFLICTING} conflicting): "
            f"{t2 - t1:.1f} s; {cpu_delta(cpu0, cpu_seconds(stack))}")  # fmt: skip

    # Exactly one click per request is accepted (200); every other one is answered 409.
    accepted: dict[str, Click] = {}
    refused: dict[str, list[tuple[Click, str]]] = defaultdict(list)
    for click, (status, text) in zip(clicks, replies, strict=True):
        assert status in (200, 409), (click, status, text[:300])
        if status == 200:
            assert click.workflow_id not in accepted, ("two clicks accepted", accepted[click.workflow_id], click)
            accepted[click.workflow_id] = click
        else:
            refused[click.workflow_id].append((click, text))
    assert sorted(accepted) == sorted(chosen)
    assert sum(len(v) for v in refused.values()) == len(clicks) - DECIDED
    for wf, answers in refused.items():
        shown = "Approved" if accepted[wf].decision == "approve" else "Rejected"
        for click, text in answers:
            assert shown in text, (click, text[:500])  # the 409 page shows the first decision

    # Every decided run finishes with the accepted click, and nothing else moved.
    cpu1 = cpu_seconds(stack)

    def finished() -> list[tuple[int, Any]] | None:
        with ThreadPoolExecutor(THREADS) as pool:
            found = list(pool.map(lambda wf: get_status(api, wf), chosen))
        return found if all(s == 200 for s, _ in found) else None

    results = wait_until(finished, timeout=DONE_WITHIN, interval=1.0, what=f"{DECIDED} runs to finish")
    t3 = time.monotonic()
    measure(f"{DECIDED} runs finished {t3 - t2:.1f} s after the last click; {cpu_delta(cpu1, cpu_seconds(stack))}")
    for wf, (_, body) in zip(chosen, results, strict=True):
        click = accepted[wf]
        result = body["result"]
        assert result["decision"] == ("approved" if click.decision == "approve" else "rejected"), (wf, result)
        assert (result["by"], result["comment"]) == ("alice@example.com", click.comment), (wf, result)

    with ThreadPoolExecutor(THREADS) as pool:
        rest = list(pool.map(lambda wf: get_status(api, wf), untouched))
    assert all(s == (202, {"workflow_id": wf, "status": "pending"}) for wf, s in zip(untouched, rest, strict=True))
    assert sink_deliveries(stack) == (DISTINCT, 0)  # deciding sends nothing again
