#!/usr/bin/env python3
"""A command action for tests/actions.rs: appends its arguments and BANHOUND_LINES to OUT as
one JSON line, so the test sees exactly what the daemon passed (one argv element per value).

usage: record-action.py OUT ARG...
"""
import json
import os
import sys

with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"argv": sys.argv[2:], "lines": os.environ.get("BANHOUND_LINES")}) + "\n")
