"""The report renders in a real headless browser: every figure loads, no console errors.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it when missing), driven by
Playwright for Python through ``executable_path`` (Playwright's own browser download is not
reachable from CI). The screenshots land in the test's tmp folder.
"""

from __future__ import annotations

import os
import shutil

import pytest

from ferray.report import build_report


def _chromium() -> str:
    for name in (os.environ.get("FERRAY_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    pytest.skip("no chromium on PATH: apt-get install -y chromium (or set FERRAY_CHROMIUM)")


@pytest.fixture(scope="module")
def browser():
    executable = _chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright for Python is not installed: pip install playwright"
    )
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def _render(browser, page_path, screenshot) -> dict:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    failed: list[str] = []
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(page_path.as_uri(), wait_until="load")
    images = page.evaluate(
        "Array.from(document.images).map(i => ({src: i.getAttribute('src').slice(0, 80), "
        "complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))"
    )
    page.screenshot(path=str(screenshot), full_page=True)
    title = page.title()
    page.close()
    return {"errors": errors, "failed": failed, "images": images, "title": title}


def test_run_report_renders_with_every_figure(browser, run_report, tmp_path):
    shot = tmp_path / "run_report.png"
    seen = _render(browser, run_report["page"], shot)
    assert seen["errors"] == [] and seen["failed"] == []
    assert len(seen["images"]) >= 11
    broken = [i["src"] for i in seen["images"] if not (i["complete"] and i["width"] > 0 and i["height"] > 0)]
    assert broken == []
    assert seen["title"].startswith("ferray report: quickstart-")
    assert shot.read_bytes()[:4] == b"\x89PNG"


def test_inline_bundle_report_renders(browser, report_bundle, tmp_path):
    page = build_report(report_bundle, data="synthetic:basic8?count=24&size=48&seed=2", out=tmp_path / "r", inline=True)
    shutil.rmtree(tmp_path / "r" / "figures")  # inlined: the page needs no file beside it
    seen = _render(browser, page, tmp_path / "bundle_report.png")
    assert seen["errors"] == [] and seen["failed"] == []
    assert seen["images"] and all(i["width"] > 0 and i["src"].startswith("data:image/png") for i in seen["images"])
