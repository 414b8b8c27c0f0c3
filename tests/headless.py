"""A real browser for tests: Chromium (Debian's package), headless, no network.

`load(url)` returns the DOM after the page's scripts ran and every console message the page
produced (Chromium prints them as INFO:CONSOLE lines; uncaught exceptions included). The pages
under test log nothing, so any message is a failure."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise RuntimeError("no chromium on PATH: `make test` installs it (apt-get install chromium)")
    return exe


def load(url: str, timeout: int = 120, width: int = 1600, height: int = 1000, screenshot=None) -> tuple[str, list[str]]:
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
            f"--window-size={width},{height}", "--virtual-time-budget=10000"]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    proc = subprocess.run(args + [url], capture_output=True, text=True, timeout=timeout)
    console = [m.group(1) for m in re.finditer(r":CONSOLE[^\]]*\] (.*)", proc.stderr)]
    return proc.stdout, console


class Spans(HTMLParser):
    """(class, text) of every <span> inside elements of class `within`, grouped per element."""

    def __init__(self, within: str):
        super().__init__()
        self.within, self.groups, self.depth, self.span = within, [], 0, None

    def handle_starttag(self, tag, attrs):
        cls = dict(attrs).get("class") or ""
        if self.depth:
            self.depth += 1
            if tag == "span":
                self.span = [cls, ""]
        elif tag == "div" and self.within in cls.split():
            self.depth = 1
            self.groups.append([])

    def handle_endtag(self, tag):
        if self.depth:
            if tag == "span" and self.span is not None:
                self.groups[-1].append(tuple(self.span))
                self.span = None
            self.depth -= 1

    def handle_data(self, data):
        if self.span is not None:
            self.span[1] += data


def spans(dom: str, within: str) -> list[list[tuple[str, str]]]:
    p = Spans(within)
    p.feed(dom)
    return p.groups
