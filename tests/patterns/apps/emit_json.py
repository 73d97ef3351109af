"""A script for dynamic "python" tasks: ``emit_json.py MODE [ARG...]``.

``ok A B`` prints a log line, then ``{"args": [A, B], "run": $DEERFLOW_RUN_ID}``; ``fail``
writes to stderr and exits 3; ``nojson`` prints text only; ``sleep PIDFILE`` writes its pid to
PIDFILE and sleeps for a minute (to be killed by a timeout).
"""

import json
import os
import sys
import time

mode, args = sys.argv[1], sys.argv[2:]
if mode == "ok":
    print("starting")
    print(
        json.dumps(
            {
                "args": args,
                "run": os.environ.get("DEERFLOW_RUN_ID"),
                "params": json.loads(os.environ.get("DEERFLOW_PARAMS", "{}")),
            }
        )
    )
elif mode == "fail":
    print("partial output")
    print("cannot open bucket s3://missing", file=sys.stderr)
    sys.exit(3)
elif mode == "nojson":
    print("done, but not as JSON")
elif mode == "sleep":
    with open(args[0], "w") as handle:
        handle.write(str(os.getpid()))
    time.sleep(60)
