"""Debian's Chromium driven by Playwright, as the browser tests and the tour script start it."""

from playwright.sync_api import Browser, Playwright

from devtools.services import ensure_os_package

# As root on a closed network: no sandbox, and nothing fetched in the background (each such
# fetch is refused, many at a time).
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright: Playwright) -> Browser:
    chromium = ensure_os_package("chromium", "chromium")
    return playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
