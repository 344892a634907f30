"""``python -m plugz_async`` and the ``plugz-async`` console script: the command line.

The command line draws its tables with rich, which comes with the ``cli`` extra (and the
``queue`` extra); a library install leaves it out. Without it, this says how to install it
in one line instead of a traceback.
"""

from __future__ import annotations

import importlib.util
import sys

#: How to install the command line, from PyPI and from a clone of the repository.
INSTALL_CLI = (
    "pip install 'plugz-async[cli]' (from a clone of the repository: pip install '.[cli]')"
)


def main() -> None:
    """Run the command line, or say how to install it and exit with 2 (usage)."""
    if sys.argv[1:] == ["--version"]:  # answered without rich: it draws nothing
        from plugz_async._version import __version__

        sys.stdout.write(f"plugz-async {__version__}\n")
        sys.exit(0)
    if importlib.util.find_spec("rich") is None:
        sys.stderr.write(f"plugz-async: the command line needs rich: {INSTALL_CLI}\n")
        sys.exit(2)
    from plugz_async.cli import run

    run()


if __name__ == "__main__":
    main()
