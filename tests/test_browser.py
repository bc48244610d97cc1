"""The reference web page in a real headless Chromium, against a real server process.

Screenshots of each state are saved under test-artifacts/browser/. The tests skip only when
Chromium is absent and RESTORA_REQUIRE_BROWSER is unset; CI (.ci/run) installs Chromium and sets
it, so there they always run.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.conftest import astronaut, encode, noisy_photo
from tests.server_process import ROOT, ServerProcess

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = ROOT / "test-artifacts" / "browser"
pytestmark = pytest.mark.slow

if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
    if os.environ.get("RESTORA_REQUIRE_BROWSER"):
        raise RuntimeError("RESTORA_REQUIRE_BROWSER is set but Chromium/chromedriver are not installed")
    pytest.skip("Chromium is not installed (apt-get install chromium chromium-driver)", allow_module_level=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(tmp_path_factory.mktemp("browser-data"))
    proc.start_blocking()
    yield proc
    proc.stop(signal.SIGTERM)


@pytest.fixture(scope="module")
def browser():
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never try to download a driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="restora-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                 f"--user-data-dir={profile}", "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.implicitly_wait(0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def shot(driver, name: str, element_id: str | None = None) -> None:
    if element_id:
        driver.execute_script("document.getElementById(arguments[0]).scrollIntoView({block: 'start'})", element_id)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait(driver, condition, timeout: float = 120.0, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition(driver)
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out; stage: {text(driver, 'stage')!r}, error: {text(driver, 'error')!r}")


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def open_page(driver, server, tool: str | None = None) -> None:
    from selenium.webdriver.support.select import Select

    driver.get(server.base + "/")
    wait(driver, lambda d: len(d.find_elements("css selector", "#tool option")) >= 6)
    if tool:
        Select(driver.find_element("id", "tool")).select_by_value(tool)


def choose(driver, path: Path) -> None:
    driver.find_element("id", "file").send_keys(str(path))
    wait(driver, lambda d: d.find_element("id", "submit").is_enabled())


def photo_file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_upload_progress_result_download_and_cancel(browser, server, tmp_path):
    open_page(browser, server)
    shot(browser, "01-empty")
    choose(browser, photo_file(tmp_path, "family.png", noisy_photo(900, 700, seed=3)))
    assert browser.find_element("id", "thumb").is_displayed()
    browser.find_element("id", "submit").click()
    stages = []
    def progressed(d):
        stage = text(d, "stage")
        if stage and (not stages or stages[-1] != stage):
            stages.append(stage)
            if len(stages) == 3:
                shot(d, "02-progress", "job")
        return stage == "Done"
    wait(browser, progressed, every=0.02)
    assert len({s for s in stages if s not in ("Waiting…", "Done")}) >= 2, stages
    wait(browser, lambda d: d.find_element("id", "after").get_property("naturalWidth") > 0)
    shot(browser, "03-result", "result")
    assert browser.find_element("id", "before").get_attribute("src").startswith("blob:")  # the chosen file
    numbers = text(browser, "numbers")
    assert "900 × 700 px" in numbers and "Steps run" in numbers and "Timings" in numbers
    clip = browser.find_element("id", "before-clip")
    before = clip.value_of_css_property("width")
    from selenium.webdriver.common.keys import Keys
    browser.find_element("id", "slider").send_keys(Keys.ARROW_RIGHT * 10)
    assert clip.value_of_css_property("width") != before  # the slider is keyboard operable
    link = browser.find_element("css selector", "#downloads a")
    with urllib.request.urlopen(link.get_attribute("href")) as resp:
        assert resp.headers["Content-Type"] == "image/png" and resp.read(8) == b"\x89PNG\r\n\x1a\n"

    choose(browser, photo_file(tmp_path, "big.png", noisy_photo(2000, 1500, seed=4)))
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: "noise" in text(d, "stage").lower() or "scratch" in text(d, "stage").lower())
    browser.find_element("id", "cancel").click()
    wait(browser, lambda d: text(d, "stage") == "Cancelled")
    shot(browser, "04-cancelled", "job")
    recent = text(browser, "recent")
    assert "big.png" in recent and "cancelled" in recent and "family.png" in recent and "complete" in recent
    # Reopening family.png's job compares against its own preview, not the file chosen since.
    browser.find_element("partial link text", "family.png").click()
    wait(browser, lambda d: "/api/v1/download/" in d.find_element("id", "before").get_attribute("src"))


def test_missing_bundle_offers_install(browser, server, tmp_path):
    open_page(browser, server, tool="colorize")
    choose(browser, photo_file(tmp_path, "grey.jpg", encode(astronaut(64))))
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: d.find_element("id", "error").is_displayed())
    shot(browser, "05-missing-bundle")
    message = text(browser, "error")
    assert "colorization" in message and "not installed" in message
    assert browser.find_element("css selector", "#error button").text == "Install colorization"


def test_invalid_file_is_explained(browser, server, tmp_path):
    open_page(browser, server)
    choose(browser, photo_file(tmp_path, "notes.jpg", b"these are my notes, not a photo\n" * 20))
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: d.find_element("id", "error").is_displayed())
    shot(browser, "06-invalid-file")
    assert "not an image" in text(browser, "error") and "Choose a photo file" in text(browser, "error")


def test_bundles_view_and_narrow_screen(browser, server):
    open_page(browser, server)
    browser.find_element("id", "tab-bundles").click()
    wait(browser, lambda d: len(d.find_elements("css selector", "#bundles li")) == 4)
    shot(browser, "07-bundles")
    assert "Install photo-restoration" in [b.get_attribute("aria-label")
                                           for b in browser.find_elements("css selector", "#bundles button")]
    browser.set_window_size(375, 800)
    browser.find_element("id", "tab-restore").click()
    width = browser.execute_script("return document.documentElement.scrollWidth")
    shot(browser, "08-narrow-375")
    assert width <= 375
    unlabeled = browser.execute_script("""
        return [...document.querySelectorAll('input, select, button')].filter(el =>
            !el.labels?.length && !el.getAttribute('aria-label') && !el.textContent.trim()
            && el.type !== 'file').map(el => el.id);""")
    assert unlabeled == []
    browser.set_window_size(1200, 1000)


def test_progress_survives_a_server_restart(browser, server, tmp_path):
    open_page(browser, server)
    choose(browser, photo_file(tmp_path, "blip.png", noisy_photo(1600, 1200, seed=5)))
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: "noise" in text(d, "stage").lower() or "scratch" in text(d, "stage").lower())
    server.stop(signal.SIGTERM)  # the running job is put back in the queue, durable
    wait(browser, lambda d: "reconnecting" in text(d, "stage").lower(), timeout=30)
    shot(browser, "09-reconnecting", "job")
    server.start_blocking()  # same port: the page's EventSource comes back by itself
    wait(browser, lambda d: text(d, "stage") == "Done", timeout=240)
    assert browser.find_element("id", "result").is_displayed()


def scratched_png(width: int = 480, height: int = 360) -> bytes:
    """The astronaut with a bright 2 px scratch across it, as PNG."""
    picture = Image.fromarray(astronaut()).resize((width, height))
    ImageDraw.Draw(picture).line([(20, 30), (width - 25, height - 40)], fill=(250, 250, 250), width=2)
    return encode(np.asarray(picture), "PNG")


def white_pixels(url: str) -> tuple[int, int, int]:
    """(width, height, white pixels) of a damage-mask PNG served at ``url``."""
    with urllib.request.urlopen(url) as resp:
        mask = Image.open(io.BytesIO(resp.read()))
    return mask.width, mask.height, int((np.asarray(mask) == 255).sum())


def test_damage_overlay_and_run_again_with_a_painted_mask(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    open_page(browser, server)
    choose(browser, photo_file(tmp_path, "scratched.png", scratched_png()))
    browser.find_element("id", "opt-denoise").click()  # off: only the repair matters here
    browser.find_element("id", "submit").click()
    wait(browser, lambda d: text(d, "stage") == "Done")
    wait(browser, lambda d: d.find_element("id", "after").get_property("naturalWidth") > 0)
    overlay = browser.find_element("id", "damage-overlay")
    assert not overlay.is_displayed()
    browser.find_element("id", "show-damage").click()
    wait(browser, lambda d: overlay.is_displayed())
    shot(browser, "10-damage-overlay", "result")
    tinted = browser.execute_script("""
        const c = document.getElementById('damage-overlay');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return [c.width, c.height, n];""")
    detected = white_pixels(browser.find_element("link text", "Download damage mask").get_attribute("href"))
    assert tinted == list(detected) and detected[:2] == (480, 360) and detected[2] > 0

    browser.find_element("id", "paint-toggle").click()
    canvas = browser.find_element("id", "paint-canvas")
    photo = browser.find_element("id", "paint-photo")
    wait(browser, lambda d: canvas.is_displayed() and photo.get_property("naturalWidth") > 0)
    assert not browser.find_element("id", "paint-run").is_enabled()
    ActionChains(browser).move_to_element_with_offset(canvas, -80, -40).click_and_hold() \
        .move_by_offset(60, 20).move_by_offset(60, 20).release().perform()
    shot(browser, "11-painted-mask", "paint")
    browser.find_element("id", "opt-scratchRemoval").click()  # off: repair only what was painted
    browser.find_element("id", "paint-run").click()
    wait(browser, lambda d: "with your mask" in text(d, "recent") and text(d, "stage") == "Done")
    job_id = browser.execute_script("return JSON.parse(localStorage.getItem('restora.recentJobs'))[0].jobId")
    with urllib.request.urlopen(f"{server.base}/api/v1/jobs/{job_id}") as resp:
        job = json.load(resp)
    assert job["params"]["scratchRemoval"] is False and job["result"]["steps"] == ["scratch_removal"]
    stored = server.data_dir / "jobs" / job_id / "mask.png"
    painted = white_pixels(stored.as_uri())  # the mask part the page sent, as the server stored it
    repaired = white_pixels(server.base + job["result"]["damageMaskUrl"])
    assert painted == repaired and painted[:2] == (480, 360) and 0 < painted[2] < 0.2 * 480 * 360


def test_api_docs_page_renders_every_operation(browser, server):
    browser.get(server.base + "/api/v1/docs")
    documented = json.loads(urllib.request.urlopen(server.base + "/api/v1/openapi.json", timeout=10).read())
    operations = sum(len(item) for item in documented["paths"].values())
    blocks = wait(browser, lambda d: d.find_elements("css selector", ".opblock"), timeout=60)
    wait(browser, lambda d: len(d.find_elements("css selector", ".opblock")) == operations, timeout=30)
    assert len(blocks) > 0 and "Restora" in browser.find_element("css selector", ".info .title").text
    shot(browser, "api-docs")
