"""The report site in headless Chromium (integration tier): the H.264 previews play, every player follows
the one scrubber, play button and frame steps, and the page loads nothing from elsewhere and logs no error.

The fixture films show frame k's index as the gray level of their left half (``site_fixture.level``), so
the frame a player displays is read back from its pixels (canvas), not only from ``currentTime``.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
from chromium import Server, chrome, needs_chromium
from site_fixture import FPS, N_FRAMES, SHOTS, frame_of_level, make_site

from deeperfour.core.config import ROOT

pytestmark = [pytest.mark.integration, needs_chromium]

F = 1 / float(FPS)  # one frame, seconds

SHOWN = """
return window.deeperfour.videos.map((v) => {
  const c = document.createElement("canvas");
  c.width = v.videoWidth; c.height = v.videoHeight;
  const g = c.getContext("2d");
  g.drawImage(v, 0, 0);
  const d = g.getImageData(4, 4, c.width / 2 - 8, c.height - 8).data;
  let s = 0;
  for (let i = 0; i < d.length; i += 4) s += d[i];
  return s / (d.length / 4);
});
"""
SETTLED = "return window.deeperfour.videos.every((v) => !v.seeking && v.readyState >= 2);"
READY = "return window.deeperfour && window.deeperfour.videos.every((v) => v.readyState >= 2);"
TIMES = "return window.deeperfour.videos.map((v) => v.currentTime);"


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    make_site(root, crf=10)
    server = Server(root / "reports")
    driver = chrome(root / "profile")
    try:
        driver.set_script_timeout(30)
        driver.get(f"{server.url}/site/index.html")
        yield driver, server, root
    finally:
        driver.quit()
        server.stop()


def wait(driver, script: str, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := driver.execute_script(script):
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for: {script}")


def settle(driver) -> list[float]:
    wait(driver, SETTLED)
    time.sleep(0.15)  # the seeked frame reaches the compositor
    return driver.execute_script(TIMES)


def shown_frames(driver) -> list[int]:
    return [frame_of_level(v) for v in driver.execute_script(SHOWN)]


def test_h264_plays_and_durations_match(page):
    driver, _, _ = page
    codec = driver.execute_script("return document.createElement('video').canPlayType("
                                  "'video/mp4; codecs=\"avc1.64001E\"')")
    assert codec in ("probably", "maybe"), "this Chromium cannot play H.264: encode the previews as VP9/WebM"
    wait(driver, READY)
    durations = driver.execute_script("return window.deeperfour.videos.map((v) => v.duration);")
    assert len(durations) == 3
    for d in durations:
        assert abs(d - N_FRAMES * F) <= F, durations
    assert driver.execute_script("return [window.deeperfour.fps, window.deeperfour.frames];") == \
        pytest.approx([float(FPS), N_FRAMES])


@pytest.mark.parametrize("k", [17, 0, N_FRAMES - 1, 33])
def test_scrubber_seeks_every_player(page, k):
    driver, _, _ = page
    driver.execute_script("const s = document.getElementById('scrub'); s.value = arguments[0];"
                          "s.dispatchEvent(new Event('input', {bubbles: true}));", k)
    times = settle(driver)
    t = (k + 0.5) * F
    assert all(abs(x - t) < F / 2 for x in times), (t, times)
    assert shown_frames(driver) == [k] * 3
    assert driver.find_element("id", "frame-label").text.startswith(f"frame {k} / {N_FRAMES - 1}")


def test_seek_time_through_the_api(page):
    driver, _, _ = page
    t = 1.2345
    driver.execute_script("window.deeperfour.seekTime(arguments[0]);", t)
    times = settle(driver)
    assert all(abs(x - t) < F / 2 for x in times), times
    assert shown_frames(driver) == [int(t / F)] * 3


def test_frame_steps_move_every_player_by_one_frame(page):
    driver, _, _ = page
    driver.execute_script("window.deeperfour.seekFrame(20);")
    settle(driver)
    for button, k in (("next", 21), ("next", 22), ("prev", 21), ("prev", 20), ("prev", 19)):
        driver.find_element("id", button).click()
        times = settle(driver)
        assert all(abs(x - (k + 0.5) * F) < 1e-3 for x in times), (button, k, times)
        assert shown_frames(driver) == [k] * 3, (button, k)
        assert driver.execute_script("return window.deeperfour.frame();") == k


def test_shot_buttons_seek_to_shot_starts(page):
    driver, _, _ = page
    buttons = driver.find_elements("css selector", "button[data-frame]")
    assert [b.text for b in buttons] == [f"shot {i + 1}" for i in range(len(SHOTS))]
    for b, start in reversed(list(zip(buttons, SHOTS, strict=True))):
        b.click()
        settle(driver)
        assert shown_frames(driver) == [start] * 3


def test_play_keeps_players_in_step(page):
    driver, _, _ = page
    driver.execute_script("window.deeperfour.seekFrame(0);")
    settle(driver)
    driver.find_element("id", "play").click()
    spreads, samples = [], []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.2:
        times = driver.execute_script(TIMES)
        samples.append(times)
        spreads.append(max(times) - min(times))
        time.sleep(0.1)
    assert driver.execute_script("return window.deeperfour.playing();")
    driver.find_element("id", "play").click()  # pause: every player onto one frame
    assert not driver.execute_script("return window.deeperfour.playing();")
    assert min(samples[-1]) > 0.5, samples[-1]  # advanced
    assert max(spreads[len(spreads) // 3:]) <= 2 * F, spreads  # in step once playing (2 frames)
    times = settle(driver)
    k = driver.execute_script("return window.deeperfour.frame();")
    assert 10 < k < N_FRAMES and all(abs(x - (k + 0.5) * F) < 1e-3 for x in times)
    assert shown_frames(driver) == [k] * 3


def test_page_loads_only_local_files_and_logs_no_error(page, tmp_path):
    driver, server, root = page
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight);")  # the lazy figures load
    wait(driver, "return Array.from(document.images).every((i) => i.complete && i.naturalWidth > 0);")
    resources = driver.execute_script("return performance.getEntriesByType('resource')"
                                      ".map((e) => [e.name, e.responseStatus]);")
    assert resources and all(name.startswith(server.url + "/") for name, _ in resources), resources
    assert all(status in (0, 200, 206) for _, status in resources), resources  # 0: media, not reported
    failed = [r for r in server.requests if r[2] >= 400]
    assert not failed, failed
    assert {p for _, p, _ in server.requests} >= {"/site/index.html", "/figures/colorize/curve.png"}
    log = driver.get_log("browser")
    errors = [e for e in log if e["level"] in ("SEVERE", "ERROR")]
    assert not errors, errors
    # the screenshot: a test artifact, and the README's picture when asked for
    driver.execute_script("window.scrollTo(0, 0); window.deeperfour.seekFrame(30);")
    settle(driver)
    shot = tmp_path / "screenshot.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 1000
    if os.environ.get("DEEPERFOUR_SAVE_SCREENSHOT") == "1":
        save_screenshot_for_readme(shot, tmp_path)


def save_screenshot_for_readme(fixture_shot, tmp_path):
    """reports/figures/site/screenshot.png: the real site (reports/site, after `dvc repro evaluate`) when it
    is there, else the fixture page."""
    dest = ROOT / "reports" / "figures" / "site" / "screenshot.png"
    dest.parent.mkdir(parents=True, exist_ok=True)
    real = ROOT / "reports" / "site" / "index.html"
    src = fixture_shot
    if real.is_file():
        server, driver = Server(ROOT / "reports"), chrome(tmp_path / "profile-real", 1280, 900)
        try:
            driver.get(f"{server.url}/site/index.html")
            wait(driver, READY)
            driver.execute_script("window.deeperfour.seekFrame(Math.floor(window.deeperfour.frames / 3));")
            settle(driver)
            assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            src = tmp_path / "screenshot-real.png"
            driver.save_screenshot(str(src))
        finally:
            driver.quit()
            server.stop()
    tmp = dest.with_name(".screenshot.partial.png")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def test_a_server_without_byte_ranges_gets_a_note(page):
    """``python -m http.server`` (3.11) sends no ranges, so a browser cannot seek: the page says so."""
    import http.server
    import threading
    from functools import partial

    from chromium import free_port

    driver, _, root = page

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()),
                                            partial(Quiet, directory=str(root / "reports")))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        assert not driver.find_element("id", "note").is_displayed()  # the ranged server: no note
        driver.get(f"http://127.0.0.1:{httpd.server_address[1]}/site/index.html")
        wait(driver, "return window.deeperfour && window.deeperfour.videos[0].readyState >= 1;")
        assert wait(driver, "return !document.getElementById('note').hidden;", 10)
        assert "cannot seek" in driver.find_element("id", "note").text
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)
