"""The ``edgecodec`` command (console entry point ``edgecodec.cli:main``).

The commands live in ``edgecodec.cli_app`` and need the 'cli' extra (typer, opencv, rich). This
module imports none of them at import time, so the command installed without the extra says in one
line which extra to install instead of printing a ``ModuleNotFoundError`` traceback.
"""

from __future__ import annotations

import sys

CLI_INSTALL = "pip install 'edgecodec[cli]'"
CLI_MODULES = ("typer", "click")  # what the app module itself imports from the extra


def main() -> None:
    try:
        from .cli_app import app
    except ImportError as e:
        missing = (e.name or "").partition(".")[0]
        if missing not in CLI_MODULES:  # not the extra's absence: a broken install, reported as such
            print(f"error: internal error: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)
        print(f"error: the edgecodec command needs the 'cli' extra ({missing} is not installed): {CLI_INSTALL}", file=sys.stderr)
        sys.exit(2)
    try:
        app()
    except SystemExit:
        raise
    except BaseException as e:  # pragma: no cover - last resort: never a traceback
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
