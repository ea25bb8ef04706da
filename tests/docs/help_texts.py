"""Print the ``--help`` text of several Python commands, as one JSON list, in one process.

Usage: ``python help_texts.py '[["benchmarks/x.py", "--help"], ["-m", "pytest", "--help"]]'``.
Each entry is what would follow ``python`` on a command line; it runs here through
:mod:`runpy` exactly as ``python ARGS`` would run it (``sys.argv`` and ``sys.path[0]`` set
the same way), so torch and the other heavy imports are paid once, not once per command.
The text is stdout and stderr together; a command that does not exit cleanly is reported as
``exit N`` plus its text.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import runpy
import sys


def _run(args: list[str]) -> str:
    out = io.StringIO()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    code: object = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            if args[0] == "-m":
                sys.argv = [args[1], *args[2:]]
                sys.path.insert(0, os.getcwd())
                runpy.run_module(args[1], run_name="__main__", alter_sys=True)
            else:
                sys.argv = list(args)
                sys.path.insert(0, os.path.dirname(os.path.abspath(args[0])))
                runpy.run_path(args[0], run_name="__main__")
    except SystemExit as stop:
        code = stop.code
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
        code = f"{type(exc).__name__}: {exc}"
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return out.getvalue() if code in (0, None) else f"exit {code}\n{out.getvalue()}"


def main() -> None:
    os.environ.setdefault("COLUMNS", "200")
    texts = [_run(args) for args in json.loads(sys.argv[1])]
    sys.stdout.write(json.dumps(texts))


if __name__ == "__main__":
    main()
