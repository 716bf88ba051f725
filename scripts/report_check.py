#!/usr/bin/env python3
"""Open ddpm-lab's report.html pages in headless Chromium and check them.

For each page, at each window width (1280 and 500 px by default; 500 px is the
narrowest window headless Chromium makes), a copy of
the page with a small checker script injected first in its <head> is loaded
with `chromium --headless --dump-dom`. After the load event the checker
writes what it found into the page, and this script reads it back:

- every <img> loaded (complete, natural width > 0), and is drawn at its own
  aspect ratio, no wider than the window;
- no console.error call, uncaught error, unhandled promise rejection or
  failed load of another resource;
- every in-page link (the table of contents) points at an element that
  exists;
- the page is no wider than the window (document.scrollingElement.scrollWidth
  <= window.innerWidth): wide tables scroll inside their box and charts scale
  down, even at 500 px.

With --out DIR, the page as it is (no checker) is also rendered to
DIR/<folder>-<width>.png, the whole page down to its first 16,000 px.

Standard library only. Exit status: 0 every page passed, 1 some check failed
(each problem printed under its page), 2 the browser could not be run.
Usage: scripts/report_check.py [--out DIR] [--widths 1280,500] [--chromium PATH] REPORT.html...
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The tallest PNG rendered (Chromium's own limit for a window is about 16k).
MAX_SHOT_HEIGHT = 16000
# Virtual time the page gets to load and run its scripts (ms).
BUDGET_MS = 15000
RESULT_ID = "__report_check__"

CHECKER = r"""<script>(function () {
  var errors = [];
  function text(x) {
    try { return typeof x === "string" ? x : (x && x.stack) || JSON.stringify(x) || String(x); }
    catch (e) { return String(x); }
  }
  function short(src) {
    src = src || "";
    if (src.slice(0, 5) === "data:") {
      return src.slice(0, 30) + "… (" + src.length + " characters)";
    }
    return src;
  }
  var consoleError = console.error;
  console.error = function () {
    errors.push("console.error: " + Array.prototype.map.call(arguments, text).join(" "));
    return consoleError.apply(console, arguments);
  };
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) {
      /* An <img> that fails is reported by the image check below. */
      if (t.tagName !== "IMG") {
        errors.push("failed to load <" + t.tagName.toLowerCase() + "> " +
                    short(t.getAttribute("src") || t.getAttribute("href")));
      }
    } else {
      errors.push("uncaught error: " + e.message + " (" + e.filename + ":" + e.lineno + ")");
    }
  }, true);
  window.addEventListener("unhandledrejection", function (e) {
    errors.push("unhandled promise rejection: " + text(e.reason));
  });
  function describe(el) {
    var d = el.tagName.toLowerCase();
    if (el.id) { d += "#" + el.id; }
    if (typeof el.className === "string" && el.className) { d += "." + el.className.split(/\s+/).join("."); }
    var t = (el.textContent || el.getAttribute("alt") || "").replace(/\s+/g, " ").trim();
    return t ? d + " \"" + t.slice(0, 60) + "\"" : d;
  }
  function check() {
    var iw = window.innerWidth;
    var images = Array.prototype.slice.call(document.images).map(function (im, i) {
      var r = im.getBoundingClientRect();
      var ratio = im.naturalWidth > 0 ? im.naturalHeight / im.naturalWidth : 0;
      return {
        index: i + 1, src: short(im.getAttribute("src")), alt: im.alt || "",
        loaded: im.complete && im.naturalWidth > 0,
        natural_width: im.naturalWidth, width: r.width, height: r.height,
        right: r.right,
        stretched: ratio > 0 && r.width > 0 && Math.abs(r.height / r.width - ratio) > 0.02 * ratio + 2 / r.width
      };
    });
    var links = [];
    Array.prototype.forEach.call(document.querySelectorAll("a[href^='#']"), function (a) {
      var id = decodeURIComponent(a.getAttribute("href").slice(1));
      if (!document.getElementById(id)) { links.push(a.getAttribute("href")); }
    });
    var sw = document.scrollingElement.scrollWidth;
    var wide = [];
    /* Inside a box that scrolls or clips (a table's wrapper, <pre>), an
       element may reach past the window without widening the page. */
    function clipped(el) {
      for (var p = el.parentElement; p && p !== document.body; p = p.parentElement) {
        if (getComputedStyle(p).overflowX !== "visible") { return true; }
      }
      return false;
    }
    function past(el) { return el.getBoundingClientRect().right > iw + 1; }
    if (sw > iw) {
      Array.prototype.forEach.call(document.body.querySelectorAll("*"), function (el) {
        var p = el.parentElement;
        if (el.id === "__report_check__" || wide.length >= 5) { return; }
        if (past(el) && !(p && p !== document.body && past(p)) && !clipped(el)) {
          wide.push(describe(el) + " reaches " + Math.round(el.getBoundingClientRect().right) + " px");
        }
      });
    }
    var out = document.createElement("pre");
    out.id = "__report_check__";
    out.hidden = true;
    out.textContent = JSON.stringify({
      inner_width: iw, scroll_width: sw, height: document.scrollingElement.scrollHeight,
      images: images, errors: errors, dead_links: links, wide: wide,
      toc_links: document.querySelectorAll("nav a[href^='#']").length
    });
    document.body.appendChild(out);
  }
  window.addEventListener("load", function () { setTimeout(check, 0); });
})();</script>"""


def find_chromium(given: str | None) -> str | None:
    """The browser: --chromium, else $CHROMIUM, else the first on PATH."""
    for candidate in [given, os.environ.get("CHROMIUM")]:
        if candidate:
            return shutil.which(candidate) or (candidate if Path(candidate).exists() else None)
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]:
        found = shutil.which(name)
        if found:
            return found
    return None


def browser(chromium: str, profile: str, width: int, height: int, args: list[str]) -> subprocess.CompletedProcess:
    """Run headless Chromium once with a fresh profile; raises on a timeout."""
    cmd = [
        chromium, "--headless", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        "--no-default-browser-check", "--disable-extensions", "--disable-dev-shm-usage",
        "--mute-audio", "--force-device-scale-factor=1", f"--user-data-dir={profile}",
        f"--window-size={width},{height}", f"--virtual-time-budget={BUDGET_MS}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=180)


def inspect(chromium: str, page: Path, width: int, work: Path) -> dict:
    """Load `page` with the checker at `width` px; what the checker found."""
    source = page.read_text(encoding="utf-8", errors="replace")
    # The copy lives elsewhere; <base> keeps the page's relative links working.
    # All on one line, so that line numbers in errors are the page's own.
    checker = " ".join(line.strip() for line in CHECKER.splitlines())
    head = f'<meta charset="utf-8"><base href="{page.parent.resolve().as_uri()}/">{checker}'
    m = re.search(r"<head[^>]*>", source, re.IGNORECASE)
    copy = source[: m.end()] + head + source[m.end():] if m else head + source
    probe = work / f"probe-{width}.html"
    probe.write_text(copy, encoding="utf-8")
    done = browser(chromium, str(work / "profile"), width, 1000, ["--dump-dom", probe.as_uri()])
    found = re.search(rf'<pre id="{RESULT_ID}"[^>]*>(.*?)</pre>', done.stdout, re.DOTALL)
    if not found:
        raise RuntimeError(
            f"Chromium exited {done.returncode} without the checker's result "
            f"(the page did not finish loading in {BUDGET_MS} ms?); its stderr ends:\n"
            + "\n".join(done.stderr.strip().splitlines()[-8:])
        )
    result = json.loads(html.unescape(found.group(1)))
    result["errors"] = [e.replace(probe.as_uri(), str(page)) for e in result["errors"]]
    return result


def problems(result: dict, width: int) -> list[str]:
    """Each thing wrong with one page at one width, in words."""
    out = []
    images = result["images"]
    for im in images:
        label = f"image {im['index']} of {len(images)} (src {im['src']}, alt \"{im['alt']}\")"
        if not im["loaded"]:
            out.append(f"{label} did not load (natural width {im['natural_width']})")
            continue
        if im["right"] > result["inner_width"] + 1:
            out.append(f"{label} is drawn {im['width']:.0f} px wide, past the {width} px window")
        if im["stretched"]:
            out.append(f"{label} is drawn at {im['width']:.0f}×{im['height']:.0f}, not its own aspect ratio")
    out += [e for e in result["errors"]]
    out += [f"in-page link {href} points at no element" for href in result["dead_links"]]
    if result["scroll_width"] > result["inner_width"]:
        out.append(
            f"the page is {result['scroll_width']} px wide in a {result['inner_width']} px window "
            f"(horizontal scrolling): " + "; ".join(result["wide"] or ["no single element found"])
        )
    return out


def check_page(chromium: str, page: Path, widths: list[int], out: Path | None) -> tuple[list[str], str]:
    """All problems of one page at every width, and a one-line summary."""
    found: list[str] = []
    shots = []
    windows = []
    with tempfile.TemporaryDirectory(prefix="report-check-") as tmp:
        work = Path(tmp)
        for width in widths:
            result = inspect(chromium, page, width, work)
            found += [f"at {width} px: {p}" for p in problems(result, width)]
            images = len(result["images"])
            windows.append(str(result["inner_width"]))
            toc = result["toc_links"]
            if out is not None:
                shot = out / f"{page.parent.name or 'report'}-{width}.png"
                height = max(1, min(result["height"], MAX_SHOT_HEIGHT))
                browser(chromium, str(work / "profile"), width, height,
                        [f"--screenshot={shot.resolve()}", page.resolve().as_uri()])
                if shot.exists() and shot.stat().st_size > 0:
                    shots.append(str(shot))
                else:
                    found.append(f"at {width} px: Chromium wrote no screenshot {shot}")
    summary = f"{images} images, {toc} contents links, windows {', '.join(windows)} px wide"
    if shots:
        summary += "; PNGs: " + ", ".join(shots)
    return found, summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pages", nargs="+", type=Path, help="report.html files")
    ap.add_argument("--out", type=Path, help="write PNG renders here")
    ap.add_argument("--widths", default="1280,500",
                    help="window widths in px (default 1280,500; Chromium's narrowest is 500)")
    ap.add_argument("--chromium", help="the browser (default: $CHROMIUM, else chromium on PATH)")
    a = ap.parse_args()
    chromium = find_chromium(a.chromium)
    if chromium is None:
        print("report_check: no Chromium found (install Debian's `chromium` package, "
              "or name the browser with --chromium or $CHROMIUM)", file=sys.stderr)
        return 2
    widths = [int(w) for w in a.widths.split(",") if w.strip()]
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    for page in a.pages:
        try:
            found, summary = check_page(chromium, page, widths, a.out)
        except (OSError, RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as e:
            print(f"report_check: {page}: could not check it in {chromium}: {e}", file=sys.stderr)
            return 2
        if found:
            failed += 1
            print(f"FAIL {page}: {summary}")
            for p in found:
                print(f"  - {p}")
        else:
            print(f"ok   {page}: every image loaded, no console errors, no horizontal overflow ({summary})")
    print(f"report_check: {len(a.pages) - failed} of {len(a.pages)} pages passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
