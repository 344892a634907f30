"""The documentation site works offline: its Mermaid diagrams draw with no network.

Material's bundle loads Mermaid from a CDN unless ``mermaid`` is already defined on the page.
The site defines it with its own copy: docs/overrides/main.html adds js/mermaid.min.js to the
pages that have a diagram, and ``nox -s docs`` fetches that file at the version pinned in
noxfile.py. The checks of the built site run when there is one (build/site, which
``nox -s docs`` writes, as CI does before the tests); they are skipped otherwise.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).parent.parent
SITE = ROOT / "build" / "site"
MKDOCS = (ROOT / "mkdocs.yml").read_text()
DIAGRAM = 'class="mermaid"'


def mkdocs_setting(name: str) -> str:
    match = re.search(rf"^\s*{name}:\s*(\S+)\s*$", MKDOCS, re.M)
    assert match, f"mkdocs.yml sets no {name}"
    return match.group(1)


def local_mermaid() -> str:
    """The mermaid script the theme override adds, as a path inside the site."""
    template = (ROOT / mkdocs_setting("custom_dir") / "main.html").read_text()
    found: list[str] = re.findall(r"<script src=\"\{\{ '([^']+)' \| url \}\}\"></script>", template)
    (src,) = found
    return src


def test_mkdocs_points_mermaid_at_a_local_script() -> None:
    assert mkdocs_setting("docs_dir") == "docs"
    assert mkdocs_setting("custom_dir") == "docs/overrides"
    # The template is the theme's, not a page of the site.
    assert re.search(r"^exclude_docs: \|\n(?:  .+\n)*  overrides/\n", MKDOCS, re.M)
    src = local_mermaid()
    assert "mermaid" in src
    assert not urlsplit(src).scheme and not urlsplit(src).netloc and not src.startswith("/")
    # No script of the site's settings comes from elsewhere (extra_javascript).
    assert not re.search(r"^\s*- (?:https?:)?//", MKDOCS, re.M)
    # `nox -s docs` writes that file into the docs, at a pinned version.
    noxfile = (ROOT / "noxfile.py").read_text()
    assert f'Path("docs/{src}")' in noxfile
    assert re.search(r'mermaid_version = "\d+\.\d+\.\d+"', noxfile)
    assert (ROOT / "docs" / "js" / ".gitignore").read_text().splitlines()[-1] == Path(src).name


def built_site() -> Path:
    if not (SITE / "index.html").exists():
        pytest.skip("no built site: `nox -s docs` builds it into build/site")
    return SITE


class Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            src = dict(attrs).get("src")
            if src is not None:
                self.sources.append(src)
            self._in_script = src is None

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline.append(data)


def scripts(page: Path) -> Scripts:
    parser = Scripts()
    parser.feed(page.read_text())
    return parser


def test_no_page_loads_a_script_from_another_host() -> None:
    site = built_site()
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 10
    with_diagram = 0
    for page in pages:
        found = scripts(page)
        for src in found.sources:
            assert not urlsplit(src).scheme and not urlsplit(src).netloc, (page, src)
        for text in found.inline:
            assert not re.search(r"https?://|unpkg|jsdelivr|cdn", text), (page, text[:200])
        # The 3.5 MB script is loaded where a diagram is, and only there.
        loads_mermaid = any(src.endswith(local_mermaid()) for src in found.sources)
        assert loads_mermaid == (DIAGRAM in page.read_text()), page
        with_diagram += loads_mermaid
    assert with_diagram >= 1  # docs/flow.md's diagram


def test_the_local_mermaid_is_the_one_material_would_fetch() -> None:
    site = built_site()
    script = site / local_mermaid()
    # The standalone build, which defines the global that Material looks for.
    assert script.stat().st_size > 1_000_000
    assert 'globalThis["mermaid"]' in script.read_text()[-2000:]
    (bundle,) = (site / "assets" / "javascripts").glob("bundle.*.min.js")
    text = bundle.read_text()
    # Material fetches its CDN copy only when `mermaid` is not defined yet...
    assert 'typeof mermaid=="undefined"' in text
    # ... and the pinned version is of the major version Material asks for.
    (major,) = set(re.findall(r"unpkg\.com/mermaid@(\d+)", text))
    noxfile = (ROOT / "noxfile.py").read_text()
    pinned = re.search(r'mermaid_version = "(\d+)\.', noxfile)
    assert pinned and pinned.group(1) == major


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served_site() -> Iterator[str]:
    """The built site over HTTP on loopback."""
    handler = functools.partial(QuietHandler, directory=str(built_site()))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_diagram_draws_with_no_network(served_site: str) -> None:
    """In headless Chromium, with every host but loopback unresolvable, Material replaces
    the diagram's code block with the drawn diagram (a ``<div class="mermaid">``)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on this machine")
    with tempfile.TemporaryDirectory() as profile:
        shown = subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                "--virtual-time-budget=15000",
                "--dump-dom",
                f"{served_site}/flow/",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    if "</html>" not in shown.stdout:
        pytest.skip(f"chromium did not start here: {shown.stderr[-300:]}")
    assert '<div class="mermaid">' in shown.stdout
    assert "sequenceDiagram" not in shown.stdout  # no code block left undrawn
