#!/usr/bin/env bash
# Gate a deploy on a person's decision: start the approval, wait for it, and exit 0 only
# when it was approved, so the pipeline's deploy step runs only then.
#
#   examples/ci/gate.sh REQUEST_JSON [TIMEOUT]      # TIMEOUT: "90s", "15m", "2h" (default 24h)
#
# REQUEST_JSON is a start body (README, "The API"): give each pipeline run its own
# workflow_id (the same id is the same request, so a re-run of the job waits on the same
# decision instead of asking again). Needs the hitl CLI (HITL_CLI, default `hitl` on PATH)
# and RESONATE_URL (plus RESONATE_TOKEN for a server with auth on).
#
# Exit codes, as `hitl wait`'s: 0 approved, 4 rejected, 5 expired, 6 canceled, 7 no decision
# within TIMEOUT, 1 not found or conflict, 2 usage or configuration, 3 server unavailable.
set -uo pipefail

request=${1:?usage: gate.sh REQUEST_JSON [TIMEOUT]}
timeout=${2:-24h}
hitl=${HITL_CLI:-hitl}

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
