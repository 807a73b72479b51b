"""The live widgets in a real JupyterLab (integration tier): headless Chromium runs a notebook with the
colorize explorer (frame scrubber, render-factor slider) and the cartoon style picker, on a tiny clip, a
tiny untrained colorizer and two tiny style generators; moving a control must change the image shown.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from chromium import chrome, free_port, needs_chromium
from site_fixture import make_film

from deeperfour.models.cartoongan import CartoonGANConfig, CartoonGenerator
from deeperfour.models.colorizer import ColorizerConfig, build_colorizer, save_colorizer

pytestmark = [pytest.mark.integration, needs_chromium, pytest.mark.timeout(300)]

TOKEN = "deeperfour-widgets-test"

# the image's bytes, whatever its src (blob: from ipywidgets' Image, data: from an Output's PNG)
IMAGE_DIGEST = """
const [img, done] = arguments;
if (!img || !img.src) { done(null); return; }
fetch(img.src).then((r) => r.arrayBuffer()).then((b) => crypto.subtle.digest("SHA-256", b))
  .then((h) => done(img.src.slice(0, 5) + Array.from(new Uint8Array(h)).map((x) => x.toString(16)).join("")))
  .catch((e) => done("error " + e));
"""


def notebook(root: Path) -> dict:
    cells = [
        "from deeperfour.infer.widgets import colorize_explorer\n"
        "from deeperfour.models.colorizer import load_colorizer\n\n"
        f"model, _ = load_colorizer({str(root / 'colorizer.pt')!r})\n"
        f"colorize_explorer(model, {str(root / 'bw.mkv')!r}, chroma_scale=1.0, device='cpu',\n"
        "                  render_factor=6)",
        "%matplotlib inline\n"
        "import numpy as np\n"
        "from deeperfour.infer.cartoonize import style_picker\n\n"
        "photos = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)\n"
        f"style_picker(photos, trained_dir={str(root / 'styles')!r}, models_dir={str(root / 'models')!r}, "
        "device='cpu')",
    ]
    return {"cells": [{"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {},
                       "outputs": [], "source": src} for i, src in enumerate(cells)],
            "metadata": {"kernelspec": {"display_name": "DeeperFour (.venv)", "language": "python",
                                        "name": "python3"},
                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """JupyterLab on a free local port, serving a folder with the fixture notebook and its files."""
    root = tmp_path_factory.mktemp("lab")
    make_film(root / "bw.mkv", seed=0, gray=True)
    torch.manual_seed(0)
    save_colorizer(root / "colorizer.pt", build_colorizer(ColorizerConfig(width=16), pretrained=False))
    for seed, name in ((1, "tiny"), (2, "tiny2")):
        torch.manual_seed(seed)
        CartoonGenerator(CartoonGANConfig(variant="light", base_channels=8, n_res_blocks=2)).save(
            root / "styles" / name / "generator.pt")
    (root / "widgets.ipynb").write_text(json.dumps(notebook(root)))
    port, state = free_port(), root.parent / f"{root.name}-state"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
           "JUPYTER_PLATFORM_DIRS": "1"}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}",
           f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={state / 'workspaces'}",
           f"--LabApp.user_settings_dir={state / 'settings'}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
           "--LabApp.extension_manager=readonly"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = (state / "lab.log")
    state.mkdir(exist_ok=True)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    driver = None
    try:
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > end:
                    raise RuntimeError(f"JupyterLab did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        driver = chrome(state / "profile", 1400, 1000)
        driver.set_script_timeout(30)
        driver.get(f"{url}/lab/tree/widgets.ipynb?token={TOKEN}")
        yield driver, log
    finally:
        if driver is not None:
            driver.quit()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def wait_for(driver, css: str, timeout: float, log: Path | None = None, n: int = 1):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = driver.find_elements("css selector", css)
        if len(found) >= n:
            return found
        time.sleep(0.25)
    errors = driver.find_elements("css selector", ".jp-OutputArea-output[data-mime-type*='error']")
    detail = "\n".join(e.text for e in errors) or (log.read_text()[-2000:] if log else "")
    raise AssertionError(f"no {css!r} after {timeout} s\n{detail}")


def digest_changes(driver, img_css: str, before: str, timeout: float = 60.0) -> str:
    from selenium.common.exceptions import StaleElementReferenceException

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        img = driver.find_elements("css selector", img_css)
        try:
            d = driver.execute_async_script(IMAGE_DIGEST, img[0] if img else None)
        except StaleElementReferenceException:  # the widget re-rendered between find and read: look again
            d = None
        if d and not d.startswith("error") and d != before:
            return d
        time.sleep(0.3)
    raise AssertionError(f"the image {img_css!r} did not change in {timeout} s")


def digest(driver, img_css: str, timeout: float = 60.0) -> str:
    return digest_changes(driver, img_css, "", timeout)


def run_cell(driver, index: int) -> None:
    """Click into code cell ``index`` and press Shift+Enter, as a person does."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    for _ in range(3):  # on a loaded machine the first keypress can land before the editor has focus
        cell = driver.find_elements("css selector", ".jp-Notebook .jp-CodeCell")[index]
        cell.find_element("css selector", ".cm-content").click()
        ActionChains(driver).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
        end = time.monotonic() + 20
        while time.monotonic() < end:  # the prompt turns from "[ ]:" to "[*]:" (queued or running) or "[1]:"
            prompt = cell.find_element("css selector", ".jp-InputPrompt").text.strip()
            if prompt and prompt not in ("[ ]:", "[]:"):
                return
            time.sleep(0.25)
    raise AssertionError(f"code cell {index} never started running after 3 Shift+Enter presses")


def set_slider(driver, slider, value: int) -> None:
    """Type a value into an ipywidgets slider's editable readout (what a person can do too)."""
    from selenium.webdriver.common.keys import Keys

    readout = slider.find_element("css selector", ".widget-readout")
    readout.click()
    driver.execute_script("const r = arguments[0]; r.focus(); document.getSelection().selectAllChildren(r);",
                          readout)
    readout.send_keys(str(value), Keys.ENTER)


def test_colorize_explorer_scrubber_and_render_factor(lab):
    driver, log = lab
    wait_for(driver, ".jp-Notebook .jp-CodeCell .cm-content", 90, log, n=2)
    wait_for(driver, ".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                     ".jp-Toolbar-kernelStatus, .jp-KernelStatus", 60, log)
    run_cell(driver, 0)
    sliders = wait_for(driver, ".jp-Notebook .widget-slider", 120, log, n=2)
    labels = [s.find_element("css selector", ".widget-label").text for s in sliders]
    assert labels == ["frame", "render factor"]
    image = ".jp-Notebook .jp-CodeCell:nth-child(1) .widget-image"
    first = digest(driver, image)
    assert first.startswith("blob:")
    frame, factor = sliders
    set_slider(driver, frame, 7)
    after_frame = digest_changes(driver, image, first)
    assert frame.find_element("css selector", ".widget-readout").text == "7"
    # the handle moves by keys too: one step right
    from selenium.webdriver.common.keys import Keys

    frame.find_element("css selector", ".noUi-handle").send_keys(Keys.ARROW_RIGHT)
    after_key = digest_changes(driver, image, after_frame)
    assert frame.find_element("css selector", ".widget-readout").text == "8"
    set_slider(driver, factor, 12)
    digest_changes(driver, image, after_key)
    assert factor.find_element("css selector", ".widget-readout").text == "12"


def test_style_picker_switches_styles(lab):
    driver, log = lab
    run_cell(driver, 1)
    select = wait_for(driver, ".jp-Notebook .widget-dropdown select", 120, log)[0]
    from selenium.webdriver.support.select import Select

    picker = Select(select)
    assert [o.text for o in picker.options] == ["tiny", "tiny2"]
    image = ".jp-Notebook .jp-CodeCell:nth-child(2) .widget-output img"
    first = digest(driver, image)
    assert first.startswith("data:")
    picker.select_by_visible_text("tiny2")
    second = digest_changes(driver, image, first)
    picker.select_by_visible_text("tiny")
    assert digest_changes(driver, image, second) == first  # same style, same picture
    assert np.all(np.array([first, second]) != "")
