"""The helper interpreter that finetune.model.patterns runs users' regular expressions in: a script on the
standard library alone (started as `python -I -S pattern_helper.py`), reading one JSON request per line on
stdin and answering one JSON line on stdout, until stdin closes.

Request:  {"regex": str, "how": "fullmatch" | "match", "group": str | null, "names": [str], "limit": s}
Answer:   {"found": [...], "cpu": s}   per name: true/false, or the named group's text (null: no match)
          {"invalid": "re's message", "cpu": s}
          {"slow": true, "cpu": s}     compiling and matching took more than `limit` CPU seconds

Why a separate process: CPython's `re` holds the GIL while it matches, so a pattern that backtracks for
minutes would freeze every thread of the app. Here, in a main thread of its own, the match is stopped by a
CPU-time timer (the regex engine checks for signals as it goes), and the app's threads only wait on a pipe.
CPU time, not wall time: a pattern's verdict must not depend on how busy the machine is.
"""

import json
import os
import re
import resource
import signal
import sys

MEMORY_BYTES = 1 << 30   # address space; a pattern's backtracking stack on module names needs far less


class TooSlow(Exception):
    pass


def _stop(signum, frame):
    raise TooSlow


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def answer(request: dict) -> dict:
    started = cpu()
    signal.setitimer(signal.ITIMER_PROF, max(request["limit"], 0.001))
    try:
        rx = re.compile(request["regex"])
        test = rx.fullmatch if request["how"] == "fullmatch" else rx.match
        group = request["group"]
        found: list
        if group is None:
            found = [test(name) is not None for name in request["names"]]
        else:
            found = [m.group(group) if (m := test(name)) else None for name in request["names"]]
        return {"found": found, "cpu": cpu() - started}
    except re.error as exc:
        return {"invalid": str(exc), "cpu": cpu() - started}
    except RecursionError:   # re's own parser recurses once per nested group
        return {"invalid": "groups nested too deeply", "cpu": cpu() - started}
    except (MemoryError, OverflowError):
        return {"slow": True, "cpu": cpu() - started}
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C in the app's terminal: the app ends us (stdin closes)
    signal.signal(signal.SIGPROF, _stop)
    os.nice(10)   # the app serving its pages comes first when both want the CPU
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    for line in sys.stdin:
        request = json.loads(line)
        started = cpu()
        try:
            reply = answer(request)
        except TooSlow:   # the timer fired (possibly just as the answer was ready: it did take that long)
            reply = {"slow": True, "cpu": cpu() - started}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
