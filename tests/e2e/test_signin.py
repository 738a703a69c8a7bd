"""Signed-in approvals end to end: unblock behind the development sign-in (devstack.signin).

Real processes: the stack with ``sign_in=True`` puts the development sign-in
where IAP would be, in front of ``unblock``, which verifies every assertion with
the same code that runs behind IAP (only the key set's URL and the audience
differ). A browser session here is a ``requests.Session``: the sign-in form sets
its cookie, as a person signing in would.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from support.api import Api, token_of, tokens_on_page, unique
from support.stacks import local_stack

from devstack.stack import DEV_AUDIENCE, PYTHON, ROOT, Stack

pytestmark = pytest.mark.usefixtures("local")

ALIASES = "alice@example.com=alice@corp.example.com"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from local_stack(tmp_path_factory, "signin", sign_in=True, env={"HITL_APPROVER_ALIASES": ALIASES})


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(stack)


def signed_in(stack: Stack, email: str) -> requests.Session:
    """A browser signed in as ``email`` through the development sign-in's form."""
    s = requests.Session()
    r = s.post(stack.unblock_url + "_dev_iap/signin", data={"email": email, "next": "/"}, allow_redirects=False)
    assert r.status_code == 303 and "dev_iap_email" in s.cookies
    return s


def function_url(stack: Stack) -> str:
    """The unblock function itself, behind the sign-in: what a request bypassing IAP reaches."""
    assert stack.unblock_fn is not None
    return stack.unblock_fn.url + "/"


def start(api: Api, **fields: Any) -> tuple[str, dict[str, str]]:
    body = api.request_body(**fields)
    assert api.start(body).status_code == 202, body
    return body["workflow_id"], api.wait_email(body["workflow_id"], body["approvers"][0])


def decide(session: requests.Session, link: str, decision: str = "approve", comment: str = "") -> requests.Response:
    page = session.get(link)
    assert page.status_code == 200, page.text
    token = tokens_on_page(page.text)[decision]
    return session.post(link.split("?")[0], data={"token": token, "comment": comment})


def test_the_right_person_decides_and_the_audit_names_the_verified_identity(api: Api, stack: Stack) -> None:
    wf, links = start(api)
    alice = signed_in(stack, "alice@example.com")
    page = alice.get(links["approve"])
    assert page.status_code == 200 and "Signed in as alice@example.com" in page.text
    assert decide(alice, links["approve"], comment="signed in").status_code == 200
    result = api.wait_done(wf)["result"]
    [entry] = result["decisions"]
    assert entry["by"] == "alice@example.com"
    assert entry["identity"]["method"] == "iap" and entry["identity"]["email"] == "alice@example.com"
    assert entry["identity"]["subject"].startswith("accounts.google.com:")
    logged = [line for line in stack.unblock_fn.output().splitlines() if "decision recorded" in line and wf in line]  # type: ignore[union-attr]
    assert logged and "'method': 'iap'" in logged[0]
    # hitl status shows it too
    env = {**os.environ, "RESONATE_URL": stack.server.url}  # type: ignore[union-attr]
    shown = subprocess.run(
        [PYTHON, "-m", "hitl.edges.cli", "status", wf], env=env, capture_output=True, text=True, cwd=ROOT
    )
    assert "iap:alice@example.com" in shown.stdout, shown.stdout


def test_another_account_is_refused_with_both_names_and_decides_nothing(api: Api, stack: Stack) -> None:
    wf, links = start(api)
    mallory = signed_in(stack, "mallory@example.com")
    page = mallory.get(links["approve"])
    assert page.status_code == 403
    assert "mallory@example.com" in page.text and "alice@example.com" in page.text and "Switch account" in page.text
    token = token_of(links["approve"])
    assert mallory.post(stack.unblock_url, data={"token": token, "comment": ""}).status_code == 403
    assert api.status(wf).json()["status"] == "pending"
    # switching account signs out; signing in as alice then decides
    assert mallory.get(stack.unblock_url + "_gcp_iap/clear_login_cookie").url.endswith("/_dev_iap/signin?next=/")
    assert decide(signed_in(stack, "alice@example.com"), links["approve"]).status_code == 200
    assert api.wait_done(wf)["result"]["by"] == "alice@example.com"


def test_an_alias_of_the_approver_decides_as_them(api: Api, stack: Stack) -> None:
    wf, links = start(api)
    assert decide(signed_in(stack, "Alice@Corp.Example.com"), links["reject"], "reject").status_code == 200
    [entry] = api.wait_done(wf)["result"]["decisions"]
    assert (entry["by"], entry["identity"]["email"]) == ("alice@example.com", "Alice@Corp.Example.com")


def test_without_a_verified_sign_in_nothing_is_shown_or_decided(api: Api, stack: Stack, tmp_path: Path) -> None:
    wf, links = start(api)
    token = token_of(links["approve"])
    # no sign-in: the browser is sent to sign in; a POST is refused
    anonymous = requests.Session()
    assert anonymous.get(links["approve"], allow_redirects=False).status_code == 302
    assert anonymous.post(stack.unblock_url, data={"token": token}).status_code == 401
    # bypassing the sign-in (straight to the function): 401 without an assertion, or with a forged one
    direct = function_url(stack)
    assert requests.get(direct, params={"token": token}, timeout=10).status_code == 401
    forged_key = ec.generate_private_key(ec.SECP256R1())
    now = int(time.time())
    forged = jwt.encode(
        {"iss": "https://cloud.google.com/iap", "aud": DEV_AUDIENCE, "iat": now, "exp": now + 600,
         "email": "alice@example.com", "sub": "accounts.google.com:1"},
        forged_key, algorithm="ES256", headers={"kid": "dev-forged"},
    )  # fmt: skip
    headers = {
        "X-Goog-IAP-JWT-Assertion": forged,
        "X-Goog-Authenticated-User-Email": "accounts.google.com:alice@example.com",
    }
    assert requests.post(direct, data={"token": token}, headers=headers, timeout=10).status_code == 401
    assert requests.get(direct, timeout=10).status_code == 401  # the inbox too
    assert api.status(wf).json()["status"] == "pending"
    # one log line per refusal, naming the check (never the token)
    refused = [line for line in stack.unblock_fn.output().splitlines() if "sign-in refused" in line]  # type: ignore[union-attr]
    assert any("check=missing" in line for line in refused) and any("check=key" in line for line in refused)
    assert not any(forged in line or token in line for line in stack.unblock_fn.output().splitlines())  # type: ignore[union-attr]


def test_a_request_requiring_sign_in_is_decided_signed_in(api: Api, stack: Stack) -> None:
    wf, links = start(api, sign_in="required")
    assert decide(signed_in(stack, "alice@example.com"), links["approve"]).status_code == 200
    result = api.wait_done(wf)["result"]
    assert (result["decision"], result["decisions"][0]["identity"]["method"]) == ("approved", "iap")


def inbox_rows(html: str) -> list[str]:
    """The subjects of the inbox's pending rows, in order."""
    return re.findall(r'<h2 id="subject-\d+"><a href="[^"]*">([^<]*)</a></h2>', html)


def test_the_inbox_lists_what_waits_and_decides_as_the_link_does(api: Api, stack: Stack) -> None:
    carol = f"carol-{unique('x')}@example.com"  # a person of her own: her inbox holds this test's requests only
    two_of_three, _ = start(api, approvers=[carol, "bob@example.com", "dave@example.com"], required=2,
                            requester="ci: deploy pipeline")  # fmt: skip
    simple, _ = start(api, approvers=[carol], deadline="2h")
    not_hers, _ = start(api, approvers=["bob@example.com"])
    browser = signed_in(stack, carol)
    inbox = browser.get(stack.unblock_url)
    assert inbox.status_code == 200
    subjects = inbox_rows(inbox.text)
    assert subjects == [f"Approve {simple}", f"Approve {two_of_three}"]  # the nearest deadline first
    assert "ci: deploy pipeline" in inbox.text and "0 of 2 needed" in inbox.text
    assert f"Approve {not_hers}" not in inbox.text
    # decide one from the inbox, with a comment: it leaves the list, and says so
    first = tokens_on_page(inbox.text.split('<article class="request"')[1])
    r = browser.post(stack.unblock_url, data={"token": first["approve"], "comment": "from my inbox", "next": "inbox"})
    assert r.status_code == 200 and r.url.startswith(stack.unblock_url + "?decided=")
    assert inbox_rows(r.text) == [f"Approve {two_of_three}"]
    assert "Recorded: you approved" in r.text and f"Approve {simple}" in r.text  # now under "Recently ended"
    [entry] = api.wait_done(simple)["result"]["decisions"]
    assert (entry["comment"], entry["identity"]["method"], entry["identity"]["email"]) == (
        "from my inbox", "iap", carol,
    )  # fmt: skip
    # one view: a bounded number of server requests (two searches; per k-of-n row, a search
    # of its votes and a read of the one vote it leaves out)
    shown = [line for line in stack.unblock_fn.output().splitlines() if "inbox shown" in line]  # type: ignore[union-attr]
    assert shown and "requests=4" in shown[-1], shown[-1:]
