"""A MkDocs hook: the site shows the pictures ``nox -s docs`` has just drawn.

The docs session draws the dashboard's picture into ``build/img/`` (headless Chromium over a
real redis-server and the sandbox), never into ``docs/img/``: the copy in git stays as it is,
so building the docs leaves the working tree clean. After the build, each fresh drawing
replaces the site's copy of the picture of the same name.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

#: Where the docs session draws (``PLUGZ_DASHBOARD_SCREENSHOT`` in noxfile.py).
DRAWN = Path("build/img")


def on_post_build(config: Any, **_: Any) -> None:
    site_img = Path(config["site_dir"]) / "img"
    for picture in sorted(DRAWN.glob("*.png")):
        if (site_img / picture.name).exists():
            shutil.copyfile(picture, site_img / picture.name)
