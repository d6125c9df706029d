"""Starts moto's server (DynamoDB, Step Functions, ... all services) bound to 127.0.0.1.

    $SAMEDAY_CACHE/venv/bin/python moto_server.py [--port N] [--verbose] [--sfn-execute]

--port 0 (the default) picks a free port. Unlike plain `moto_server -p 0`, this sets
MOTO_PORT to the real port after binding: moto uses MOTO_PORT for URLs that point back
at itself (e.g. the Step Functions ASL interpreter's service calls, SQS queue URLs).
Readiness: exactly one line `LISTENING <port>` on stdout; everything else goes to stderr.
Exits on SIGTERM/SIGINT, and by itself when its parent process dies (unless
SAMEDAY_EMULATOR_DETACHED=1, set by `sameday-stack`: then it outlives its starter).

Plain equivalent with a fixed port:  moto_server -H 127.0.0.1 -p PORT
(ready when its stderr prints ` * Running on http://127.0.0.1:PORT`).
"""

import argparse
import logging
import os
import signal
import sys
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    parser.add_argument("--sfn-execute", action="store_true",
                        help="run Step Functions executions through moto's ASL interpreter "
                             "(default: executions are stubbed and just report SUCCEEDED)")
    args = parser.parse_args()

    # Keep werkzeug's per-request log off unless asked (it goes to stderr either way).
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.verbose else logging.WARNING)

    from werkzeug.serving import make_server
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    if args.sfn_execute:
        from moto.core.config import default_user_config
        default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True

    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", args.port, app, threaded=True,
                         request_handler=MotoRequestHandler)
    port = server.server_address[1]
    os.environ["MOTO_PORT"] = str(port)

    def stop(_signum, _frame):
        os._exit(0)  # in-memory: nothing to flush; don't wait for request threads

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    ppid = os.getppid()

    def watch_parent() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != ppid:
                os._exit(0)

    if os.environ.get("SAMEDAY_EMULATOR_DETACHED") != "1":
        threading.Thread(target=watch_parent, daemon=True).start()

    sys.stdout.write(f"LISTENING {port}\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
