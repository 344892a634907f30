"""``python -m plugz_async``: the command line, as ``plugz-async``."""

from plugz_async.cli import run

if __name__ == "__main__":
    run()
