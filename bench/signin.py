"""The sign-in section of ``make bench``: what a verified sign-in and an inbox cost.

- :func:`verification_cost`: the CPU one IAP assertion's check takes once the keys
  are cached (target: under 1 ms a click), as the verifier alone and as ``unblock``'s
  gate calls it (off the event loop);
- :func:`inbox_cost`: a stack with sign-in on and N requests pending on the server
  (for another approver), a person with three requests of their own opens their
  inbox: the view's round trip through the development sign-in, the server requests
  it costs, and the server's and ``unblock``'s CPU, at each N. The design's claim:
  flat in N (the searches walk the person's region, which its fences end).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from starlette.requests import Request

from bench.driving import WARM_UPS, measured_runs
from bench.full_stack import LIGHT_SINK, Progress, StackDriver, driven_stack, idle
from bench.stats import bounded, summary
from devstack.procstats import cpu_s, tree
from hitl.edges.signin import Gate
from hitl.security.iap import ISSUER, KeySet, Verifier
from hitl.settings import SignIn

AUDIENCE = "/projects/1/locations/bench/services/hitl-unblock"
ME = "bench-me@example.com"


def _signer() -> tuple[Verifier, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": "b1", "alg": "ES256", "use": "sig"}
    keys = KeySet("https://keys.bench", fetch=lambda url: json.dumps({"keys": [jwk]}).encode())
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "email": ME,
        "sub": "accounts.google.com:1",
    }
    return Verifier(keys, AUDIENCE), jwt.encode(claims, key, algorithm="ES256", headers={"kid": "b1"})


async def verification_cost(calls: int) -> dict[str, Any]:
    verifier, token = _signer()
    verifier.verify(token)  # the keys fetched and parsed: cached from here on
    t0 = time.process_time()
    for _ in range(calls):
        verifier.verify(token)
    alone_ms = (time.process_time() - t0) * 1000 / calls
    gate = Gate(SignIn(AUDIENCE), verifier)
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"x-goog-iap-jwt-assertion", token.encode())]}  # fmt: skip
    request = Request(scope)
    await gate.who(request)
    t0 = time.process_time()
    for _ in range(calls):
        await gate.who(request)
    gate_ms = (time.process_time() - t0) * 1000 / calls
    return {"calls": calls, "verify_cpu_ms": alone_ms, "gate_cpu_ms": gate_ms, "key_fetches": verifier.keys.fetches}


def _request(wid: str, approvers: list[str], **fields: Any) -> dict[str, Any]:
    return {"workflow_id": wid, "approvers": approvers, "subject": f"Approve {wid}", **fields}


async def inbox_cost(d: StackDriver, levels: tuple[int, ...], views: int, progress: Progress) -> dict[str, Any]:
    assert d.stack.server is not None
    assert d.stack.unblock_fn is not None
    server, unblock = [d.stack.server.popen.pid], tree(d.stack.unblock_fn.popen.pid)
    # the person's own three requests, one needing two approvals of three
    for body in (
        _request(f"me-{uuid.uuid4().hex[:8]}", [ME]),
        _request(f"me-{uuid.uuid4().hex[:8]}", [ME], deadline="2h"),
        _request(f"me-{uuid.uuid4().hex[:8]}", [ME, "x@example.com", "y@example.com"], required=2),
    ):
        await d.start(body)
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.post(d.unblock_url + "_dev_iap/signin", data={"email": ME, "next": "/"}) as r:
            assert r.status == 200, r.status  # followed to the inbox (its first view makes the fences)

        async def view(_: str) -> float:
            t0 = time.perf_counter()
            async with browser.get(d.unblock_url) as r:
                page = await r.text()
                assert r.status == 200, r.status
                assert len(re.findall(r'<article class="request"', page)) == 3, "the person's three requests"
            return (time.perf_counter() - t0) * 1000

        rows = []
        have = 0
        for level in levels:
            progress(f"inbox: {level} other requests pending")
            await bounded(level - have, 48, lambda i, first=have: d.park(f"other-{first + i}"))
            have = level
            await idle(server + unblock, 60)
            cpu0 = cpu_s(server), cpu_s(unblock)
            times = await measured_runs(view, views, f"inbox{level}", progress)
            cpu = [(cpu_s(p) - c) * 1000 / (views + WARM_UPS) for p, c in zip((server, unblock), cpu0, strict=True)]
            shown = [line for line in d.stack.unblock_fn.output().splitlines() if "inbox shown" in line]
            requests = int(re.search(r"requests=(\d+)", shown[-1]).group(1))  # type: ignore[union-attr]
            rows.append({"pending_on_server": level, "view_ms": summary(times, "ms"), "server_requests": requests,
                         "server_cpu_ms": cpu[0], "unblock_cpu_ms": cpu[1]})  # fmt: skip
            progress(f"inbox at {level}: median {rows[-1]['view_ms']['median']:.1f} ms, {requests} server requests")
    return {"views": views, "levels": rows}


async def section_signin(tmp: Path, cfg: Any, progress: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {"verification": await verification_cost(2000)}
    progress(f"sign-in: one check {out['verification']['verify_cpu_ms'] * 1000:.0f} µs of CPU")
    async with driven_stack(tmp / "signin", sign_in=True, sink_command=LIGHT_SINK) as d:
        out["inbox"] = await inbox_cost(d, cfg.waiting_levels[:1] + cfg.waiting_levels[-1:], cfg.stack_runs, progress)
    return out
