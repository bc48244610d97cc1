"""The web page with several photos at once, in the real headless Chromium of test_browser.py:
one batch, a row per photo with its own progress, all results as one ZIP."""
from __future__ import annotations

import io
import urllib.request
import zipfile

from tests.conftest import astronaut, encode
from tests import test_browser as page
from tests.test_browser import open_page, photo_file, shot, text, wait

browser, server = page.browser, page.server  # its fixtures: a Chromium and a `restora serve` process


def test_several_photos_make_one_batch_with_a_row_each_and_one_zip(browser, server, tmp_path):
    open_page(browser, server)
    paths = [photo_file(tmp_path, f"photo-{i}.jpg", encode(astronaut(48 + 16 * i))) for i in range(3)]
    browser.find_element("id", "file").send_keys("\n".join(str(path) for path in paths))
    wait(browser, lambda d: d.find_element("id", "submit").is_enabled())
    assert text(browser, "file-name").startswith("3 photos")
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: len(d.find_elements("css selector", "#batch-rows li")) == 3)
    assert [r.find_element("css selector", ".batch-name").text
            for r in browser.find_elements("css selector", "#batch-rows li")] == [p.name for p in paths]
    wait(browser, lambda d: d.find_element("id", "batch-zip").is_displayed())
    shot(browser, "batch-done", "batch")
    rows = browser.find_elements("css selector", "#batch-rows li")
    assert [row.get_attribute("data-state") for row in rows] == ["complete"] * 3
    assert [row.find_element("tag name", "progress").get_property("value") for row in rows] == [100] * 3
    assert text(browser, "batch-totals") == "3 of 3 finished: 3 done, 0 failed, 0 cancelled"
    with urllib.request.urlopen(browser.find_element("id", "batch-zip").get_attribute("href")) as resp:
        archive = zipfile.ZipFile(io.BytesIO(resp.read()))
    assert archive.namelist() == [f"photo-{i}_restored.jpg" for i in range(3)]
    # A row opens its own result, and each photo is among the recent jobs.
    rows[1].find_element("tag name", "button").click()
    wait(browser, lambda d: d.find_element("id", "result").is_displayed())
    assert "64 × 64 px" in text(browser, "numbers")
    recent = text(browser, "recent")
    assert all(path.name in recent for path in paths)
