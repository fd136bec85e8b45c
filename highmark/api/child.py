"""A run started through the API, in a process of its own (``python -m highmark.api.child``).

The server writes the request as JSON on stdin. The child loads the project (its environment is
the server's, so ``${VAR}`` resolves the same), claims the run, writes one JSON line on stdout —
``{"run_id": N}`` as soon as the run's row exists, or ``{"error": …}`` when it could not start —
and runs it to its end, logging to the server's stderr. SIGTERM or SIGINT ask the run to stop
(it ends ``cancelled``, its checkpoint saved), as in a worker's child.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

EXIT_NOT_STARTED = 3


def main() -> None:
    request = json.loads(sys.stdin.read())
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    # Whatever else is printed goes to stderr: stdout carries the one answer line.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def answer(message: dict[str, Any]) -> None:
        if out.closed:
            return
        try:
            out.write(json.dumps(message) + "\n")
            out.flush()
            out.close()
        except OSError:  # the server stopped waiting: the run goes on
            pass

    from highmark.console import setup_logging
    from highmark.errors import DuplicateRequestError, HighmarkError, JobAlreadyRunningError
    from highmark.models import RunStatus, TriggeredBy
    from highmark.project import Project
    from highmark.run import CancelToken

    setup_logging(debug=bool(request.get("debug")), interactive=False)
    token = CancelToken()

    def stop(signum: int, _frame: Any) -> None:
        token.cancel(f"cancelled by {signal.Signals(signum).name} (server stopping)", signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        project = Project.load(request["project"], sync=False, migrate=False)
        options: dict[str, Any] = {
            "triggered_by": TriggeredBy.API,
            "cancel": token,
            "on_claimed": lambda run_id: answer({"run_id": run_id}),
            "idempotency_key": request.get("idempotency_key"),
        }
        if request["kind"] == "backfill":
            record = project.backfill(request["job_id"], request["from"], request["to"], **options)
        else:
            record = project.run(
                request["job_id"], full_refresh=bool(request.get("full_refresh")), **options
            )
    except JobAlreadyRunningError as exc:
        answer({"error": "running", "message": str(exc), "run_id": exc.details.get("run_id")})
        sys.exit(EXIT_NOT_STARTED)
    except DuplicateRequestError as exc:
        answer({"error": "duplicate", "message": str(exc)})
        sys.exit(EXIT_NOT_STARTED)
    except HighmarkError as exc:
        answer({"error": type(exc).__name__, "message": str(exc)})
        sys.exit(EXIT_NOT_STARTED)
    sys.exit(0 if record.run_status is RunStatus.SUCCESS else 1)


if __name__ == "__main__":
    main()
