"""hsiseg annotate in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by
Selenium loads the demo, draws a stroke of each class with pointer events, gets a map, toggles a class, draws
a partial-label stroke, and the label image on disk holds the strokes with the right values."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from hsiseg.annotate import AnnotationSession, LiveSettings, LiveWorker
from hsiseg.annotate.demo import demo_scene
from hsiseg.annotate.server import create_app
from hsiseg.dataset.spec import DataSpec
from hsiseg.synthetic.dataset import generate_demo_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
NO_BROWSER = "no Chromium / ChromeDriver (Debian packages chromium, chromium-driver)"
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None, reason=NO_BROWSER)

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


@pytest.fixture
def served(tmp_path: Path):
    import uvicorn

    generate_demo_data(tmp_path / "demo", surgeries=2, frames=1, shape=(48, 64), seed=5)
    spec_path = demo_scene(tmp_path / "demo")
    session = AnnotationSession(spec_path, "tester")
    worker = LiveWorker(session, LiveSettings(first_steps=60, update_steps=20), debounce=0.2)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    server = uvicorn.Server(uvicorn.Config(create_app(session, worker, "browser-token"), log_level="warning",
                                           lifespan="off"))  # fmt: skip
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/?token=browser-token", spec_path, session
    server.should_exit = True
    thread.join(timeout=10)
    worker.stop()


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 60.0, what: str = "the page") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


STROKE = """
const viewport = document.getElementById('viewport');
const send = (type, x, y) => viewport.dispatchEvent(new PointerEvent(type, {clientX: x, clientY: y, button: 0,
    buttons: 1, pointerId: 1, bubbles: true}));
const points = arguments[0];
send('pointerdown', ...points[0]);
for (const point of points.slice(1)) send('pointermove', ...point);
send('pointerup', ...points[points.length - 1]);
"""


def test_draw_train_toggle_and_save_in_a_real_browser(served, browser, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url, spec_path, session = served
    browser.get(url)
    wait_for(lambda: browser.execute_script("return document.body.dataset.ready") == "1")
    spec = DataSpec.from_file(spec_path)
    sample_id = list(spec.samples)[0]
    truth = spec.read_truth(sample_id)
    canvas = browser.find_element(By.ID, "image-canvas")
    box = browser.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, "
                                 "r.height];", canvas)  # fmt: skip

    def screen(x: float, y: float) -> list[float]:
        return [box[0] + (x + 0.5) * box[2] / 64, box[1] + (y + 0.5) * box[3] / 48]

    drawn = {}
    for code in np.unique(truth[truth >= 0]):
        depth = ndimage.distance_transform_edt(truth == code)
        y, x = np.unravel_index(depth.argmax(), depth.shape)
        if depth[y, x] < 2:
            continue
        browser.find_element(By.CSS_SELECTOR, f'.node[data-code="{code}"]').click()
        before = session.layer_state(sample_id)["version"]
        browser.execute_script(STROKE, [screen(x, y), screen(x + 0.4, y), screen(x + 0.8, y)])
        wait_for(lambda before=before: session.layer_state(sample_id)["version"] > before, 10, "the stroke saved")
        drawn[int(code)] = (int(x), int(y))
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#legend input[type=checkbox]"), 90, "the map")
    browser.save_screenshot(str(tmp_path / "annotate.png"))

    browser.find_element(By.ID, "suggest").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#suggestions li"), 30, "the suggestions")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#suggestions li")) == 5
    browser.find_element(By.CSS_SELECTOR, "#suggestions li button").click()  # selects its label in the palette
    assert browser.find_elements(By.CSS_SELECTOR, ".node.selected")
    view = session.view(sample_id)
    first = view.offered[0].copy()
    browser.find_element(By.CSS_SELECTOR, "#suggestions li button.decline").click()  # "no class here"
    wait_for(lambda: view.declined is not None and not any((mask & first).any() for mask in view.offered), 30,
             "the suggestions without it")  # fmt: skip
    assert (view.declined == first).all()
    wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#suggestions li")) == 5, 10, "the new list shown")

    toggle = browser.find_elements(By.CSS_SELECTOR, "#legend input[type=checkbox]")[0]
    hidden_code = int(toggle.get_attribute("data-code"))
    alpha_of = ("const c = document.getElementById('map-canvas').getContext('2d'); const d = c.getImageData(0, 0, "
                "c.canvas.width, c.canvas.height).data; return Array.from(d.filter((_, i) "
                "=> i % 4 === 3));")  # fmt: skip
    alphas_before = np.array(browser.execute_script(alpha_of))
    toggle.click()
    alphas_after = np.array(browser.execute_script(alpha_of))
    assert (alphas_after == 0).sum() > (alphas_before == 0).sum()  # the class left the map

    vessel = spec.tree.index("vessel")
    vessels = np.argwhere(np.isin(truth, [spec.tree.index("artery"), spec.tree.index("vein")]))  # (row, column)
    far = [min(abs(r - y) + abs(c - x) for x, y in drawn.values()) for r, c in vessels]
    row, column = (int(v) for v in vessels[int(np.argmax(far))])
    browser.find_element(By.CSS_SELECTOR, f'.node[data-code="{vessel}"]').click()
    before = session.layer_state(sample_id)["version"]
    browser.execute_script(STROKE, [screen(column, row), screen(column + 0.4, row)])
    wait_for(lambda: session.layer_state(sample_id)["version"] > before, 10, "the partial-label stroke saved")

    saved = DataSpec.from_file(spec_path).read_annotation(sample_id)
    for code, (x, y) in drawn.items():
        assert saved[y, x] == code, (spec.tree.node(code).name, saved[y, x])
    assert saved[row, column] == vessel  # a partial label, with the spec's value for 'vessel'
    assert 0 <= hidden_code < spec.tree.num_leaves
