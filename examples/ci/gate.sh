#!/usr/bin/env bash
# Gate a deploy on a person's decision: start the approval, wait for it, and exit 0 only
# when it was approved, so the pipeline's deploy step runs only then.
#
#   examples/ci/gate.sh REQUEST_JSON [TIMEOUT]      # TIMEOUT: "90s", "15m", "2h" (default 24h)
#
# REQUEST_JSON is a start body (README, "The API"): give each pipeline run its own
# workflow_id (the same id is the same request, so a re-run of the job waits on the same
# decision instead of asking again). Needs the hitl CLI (HITL_CLI, default `hitl` on PATH).
#
# The pipeline holds only what a start caller holds, never the Resonate server's token
# (which could settle any promise, the votes of its own request included):
#   HITL_START_URL        the start function
#   and one of
#   HITL_START_AUTH=google      an identity token from Google's default credentials (Cloud Build,
#                               Compute Engine, a service account key), for start_auth = "iam"
#   HITL_START_TOKEN_COMMAND    a command printing a fresh identity token, for start_auth = "iam"
#   HITL_WEBHOOK_SECRET         the webhook secret, for start_auth = "webhook"
# With these the CLI can start, wait and cancel; `hitl decide` needs the server and is refused.
#
# Exit codes, as `hitl wait`'s: 0 approved, 4 rejected, 5 expired, 6 canceled, 7 no decision
# within TIMEOUT, 1 not found or conflict, 2 usage or configuration, 3 start unavailable.
set -uo pipefail

request=${1:?usage: gate.sh REQUEST_JSON [TIMEOUT]}
timeout=${2:-24h}
hitl=${HITL_CLI:-hitl}

if [ -n "${RESONATE_TOKEN:-}" ]; then
  echo "gate: RESONATE_TOKEN is set: a pipeline must not hold the server's token (it can decide its own request)" >&2
  exit 2
fi
if [ -z "${HITL_START_URL:-}" ]; then
  echo "gate: set HITL_START_URL (the start function) and its credentials" >&2
  exit 2
fi

"$hitl" start "$request" --wait --timeout "$timeout"
code=$?
case $code in
  0) echo "gate: approved" ;;
  4) echo "gate: rejected" >&2 ;;
  5) echo "gate: expired without a decision" >&2 ;;
  6) echo "gate: canceled" >&2 ;;
  7) echo "gate: no decision within $timeout" >&2 ;;
  *) echo "gate: no decision could be read (exit $code)" >&2 ;;
esac
exit "$code"
