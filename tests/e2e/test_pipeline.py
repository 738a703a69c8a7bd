"""The CI gate holds a start caller's credentials, never the keys to the gate (issue 15, point 4).

The pipeline is the examples/ci gate script and the hitl CLI, as separate
processes, holding only what a ``start`` caller holds: the ``start`` function's
URL and the webhook secret (``start_auth = "webhook"``) or an invoker's identity
token (``start_auth = "iam"``, with :class:`support.invoker.Invoker` in front of
the local function as Cloud Run's IAM check). With those it starts, waits and
cancels; it cannot decide its own request, by any door.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from support.api import Api, Target
from support.invoker import Invoker, Issuer
from support.stacks import local_stack

from devstack.stack import PYTHON, ROOT, Stack, wait_until
from hitl.security import signatures

pytestmark = pytest.mark.usefixtures("local")

GATE = ROOT / "examples" / "ci" / "gate.sh"
HITL = str(Path(PYTHON).parent / "hitl")
SECRET = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``start`` in webhook mode: public, every request signed with the secret."""
    yield from local_stack(tmp_path_factory, "pipeline", env={"HITL_WEBHOOK_SECRET": SECRET})


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api(dataclasses.replace(Target.local(stack), webhook_secret=SECRET))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Resonate or hitl variable: nothing leaks in."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RESONATE_", "HITL_", "GOOGLE_"))}
    return {**base, "HITL_CLI": HITL, **extra}


@pytest.fixture
def pipeline(stack: Stack) -> dict[str, str]:
    """What the pipeline holds: the start function's URL and the webhook secret. Nothing else."""
    assert stack.start_fn is not None
    return clean_env(HITL_START_URL=stack.start_fn.url + "/", HITL_WEBHOOK_SECRET=SECRET)


def hitl(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HITL, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def gate(env: dict[str, str], tmp_path: Path, body: dict[str, Any], timeout: str = "60s") -> subprocess.Popen[str]:
    request = tmp_path / f"{body['workflow_id']}.json"
    request.write_text(json.dumps(body))
    return subprocess.Popen(
        ["bash", str(GATE), str(request), timeout], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def waiting(api: Api, wf: str) -> None:
    """Until the gate's request exists and its approver has been asked."""
    api.wait_email(wf)


@pytest.mark.parametrize(
    ("act", "code", "says"), [("approve", 0, "gate: approved"), ("reject", 4, "gate: rejected"), (None, 5, "expired")]
)
def test_the_ci_gate_passes_only_an_approval(
    api: Api, pipeline: dict[str, str], tmp_path: Path, act: str | None, code: int, says: str
) -> None:
    body = api.request_body(deadline=2 if act is None else 600)
    wf = body["workflow_id"]
    proc = gate(pipeline, tmp_path, body)
    if act is not None:
        api.decide(api.wait_email(wf)[act], act)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, (out, err)
    assert says in out + err
    # the deploy step of the examples runs only on exit 0: the same script, the same code


def test_the_pipelines_credentials_cannot_decide_its_own_request(
    api: Api, pipeline: dict[str, str], stack: Stack, tmp_path: Path
) -> None:
    body = api.request_body()
    wf = body["workflow_id"]
    proc = gate(pipeline, tmp_path, body, "120s")
    waiting(api, wf)

    # 1. hitl decide and hitl list need the server, which the pipeline cannot reach
    decided = hitl(pipeline, "decide", wf, "--approver", "alice@example.com", "--approve")
    assert decided.returncode == 2 and "needs the Resonate server" in decided.stderr, decided.stderr
    assert hitl(pipeline, "list").returncode == 2
    # 2. a request of its own, with its own author as approver, naming its gate's vote as a target
    own = api.request_body(approvers=["author@example.com"], on_decision=[{"type": "promise", "id": f"{wf}:1"}])
    (tmp_path / "own.json").write_text(json.dumps(own))
    assert hitl(pipeline, "start", str(tmp_path / "own.json")).returncode == 0
    api.decide(api.wait_email(own["workflow_id"], "author@example.com")["approve"])
    delivery = wait_until(
        lambda: (d := api.status(own["workflow_id"]).json().get("on_decision")) and d[0]["state"] != "pending" and d[0],
        timeout=30,
        what="the author's delivery",
    )
    assert delivery["state"] == "failed"
    # 3. start's doors refuse what is not signed (a stranger without the secret neither reads nor starts)
    assert requests.get(api.start_url, params={"workflow_id": wf}, timeout=10).status_code == 401
    assert requests.post(api.start_url, json=api.request_body(), timeout=10).status_code == 401
    # 4. unblock decides only with a link signed by the server's key, which the pipeline never sees
    forged = requests.post(api.unblock_url, data={"token": "eyJ4Ijoi.forged", "comment": ""}, timeout=10)
    assert forged.status_code == 403
    # none of it decided: the gate still waits, until the approver approves
    assert proc.poll() is None
    assert api.status(wf).json()["status"] == "pending"
    api.decide(api.wait_email(wf)["approve"], comment="reviewed")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "gate: approved" in out, (out, err)
    assert api.status(wf).json()["result"]["by"] == "alice@example.com"


def test_the_gate_refuses_to_run_holding_the_servers_token(api: Api, pipeline: dict[str, str], tmp_path: Path) -> None:
    proc = gate({**pipeline, "RESONATE_TOKEN": "ey.x.y"}, tmp_path, api.request_body())
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "must not hold the server's token" in err


def test_the_pipeline_can_cancel_its_own_request(api: Api, pipeline: dict[str, str], tmp_path: Path) -> None:
    body = api.request_body()
    wf = body["workflow_id"]
    proc = gate(pipeline, tmp_path, body)
    waiting(api, wf)
    canceled = hitl(pipeline, "cancel", wf, "--reason", "superseded")
    assert canceled.returncode == 0, canceled.stderr
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 6 and "canceled" in err
    assert hitl(pipeline, "status", wf, "--json").returncode == 0
    assert hitl(pipeline, "cancel", wf).returncode == 1  # already ended


def test_a_status_read_is_signed_over_its_query(api: Api) -> None:
    body = api.request_body()
    wf = body["workflow_id"]
    assert api.start(body).status_code == 202
    assert api.status(wf).status_code == 202
    query = f"workflow_id={wf}"
    other = signatures.sign(SECRET.encode(), b"workflow_id=someone-else", int(time.time()))
    r = requests.get(f"{api.start_url}?{query}", headers={signatures.HEADER: other}, timeout=10)
    assert (r.status_code, r.json()["error"]) == (401, "signature mismatch")
    stale = signatures.sign(SECRET.encode(), query.encode(), int(time.time()) - 3600)
    assert requests.get(f"{api.start_url}?{query}", headers={signatures.HEADER: stale}, timeout=10).status_code == 401


# -- start_auth = "iam": an invoker's identity token -------------------------------------------


@pytest.fixture(scope="module")
def iam_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``start`` with no webhook secret, behind :class:`Invoker` (Cloud Run's IAM check)."""
    yield from local_stack(tmp_path_factory, "pipeline-iam")


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    i = Issuer()
    yield i
    i.close()


@pytest.fixture
def invoker(iam_stack: Stack, issuer: Issuer) -> Iterator[Invoker]:
    assert iam_stack.start_fn is not None
    proxy = Invoker(iam_stack.start_fn.url, issuer, single_use=True)
    yield proxy
    proxy.close()


def service_account_key(tmp_path: Path, issuer: Issuer) -> Path:
    """A service account key file whose token endpoint is the local :class:`Issuer`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": pem,
            "client_email": "ci@p.iam.gserviceaccount.com", "client_id": "1", "token_uri": issuer.token_uri}  # fmt: skip
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return path


@pytest.mark.parametrize("source", ["google", "command"])
def test_an_invokers_identity_token_is_minted_and_minted_again_once_refused(
    iam_stack: Stack, issuer: Issuer, invoker: Invoker, tmp_path: Path, source: str
) -> None:
    api = Api(iam_stack)
    body = api.request_body()
    wf = body["workflow_id"]
    if source == "google":  # Google's default credentials: here a service account key
        creds = {
            "HITL_START_AUTH": "google",
            "GOOGLE_APPLICATION_CREDENTIALS": str(service_account_key(tmp_path, issuer)),
        }
    else:  # a command printing a fresh token, as `gcloud auth print-identity-token` does
        mint = f"{sys.executable} -c \"import requests; print(requests.post('{issuer.token_uri}', timeout=5).json()['id_token'])\""
        creds = {"HITL_START_TOKEN_COMMAND": mint}
    env = clean_env(HITL_START_URL=invoker.url, **creds)
    proc = gate(env, tmp_path, body, "120s")
    api.decide(api.wait_email(wf)["approve"])
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    # each token let one request through: the start, then the wait, were each refused once
    # with a spent token, and went through with a fresh one
    assert invoker.refused >= 1 and len(issuer.minted) >= 2, (invoker.refused, len(issuer.minted))
    # without a token, Cloud Run's check refuses the CLI: a usage error naming what to check
    refused = hitl(clean_env(HITL_START_URL=invoker.url), "status", wf)
    assert refused.returncode == 2 and "refused the credentials" in refused.stderr
