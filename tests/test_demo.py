"""The web demo: the pure analyse() path, the Gradio API through gradio_client, and a real browser.

One app is launched per module (on a free localhost port) and shared by the end-to-end tests.
"""

import base64
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from imagefiles import mnist_line, png_claiming, tilted_photo
from PIL import Image

from benchmarks.robustness import tilted
from segapp.classes import BACKGROUND, MAX_PIXELS, PALETTE, hex_colour
from segapp.demo import LAUNCH_KWARGS, build_app, load_segmenter, main
from segapp.demo_answer import (
    MAX_MASKS,
    Result,
    analyse,
    analyse_upload,
    digit_masks,
    reading_html,
    table_html,
)
from segapp.demo_gradio import UploadImage
from segapp.images import Prepared
from segapp.m2nist import make_split
from segapp.paths import EXAMPLES_DIR
from segapp.render import Segmentation, read_digits


def truth(mask: np.ndarray) -> str:
    return " ".join(str(d["digit"]) for d in read_digits(mask, np.ones(mask.shape, np.float32)))


def png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


BAD_UPLOADS = {  # file name -> (content, what the message must say)
    "empty.png": (b"", "empty file"),
    "notes.png": (b"just some text, not a picture\n", "not an image"),
    "truncated.png": (png(np.full((64, 84), 200, np.uint8))[:60], "corrupt or truncated"),
    "dot.png": (png(np.zeros((1, 1), np.uint8)), "too small"),
    "bomb.png": (png_claiming(5000, 5000), f"{MAX_PIXELS:,}"),
}


@pytest.fixture(scope="module")
def model():
    """The shipped weights behind the one inference path (a Segmenter), as the demo loads them."""
    return load_segmenter()


# --- the pure function ------------------------------------------------------------------------------------------


def test_reads_m2nist_test_images(model, test_split):
    images, masks = test_split
    right = sum(analyse(model, png(img)).seg.text == truth(m) for img, m in zip(images, masks))
    assert right >= 0.95 * len(images)


def test_overlay_tints_digits_in_their_colour_and_leaves_background_untouched(model, test_split):
    image = test_split[0][1]
    solid = analyse(model, image, alpha=1.0)
    classes, display = solid.seg.classes, solid.seg.prepared.display
    assert solid.overlay.shape == (64, 84, 3) and solid.overlay.dtype == np.uint8 and classes.shape == (64, 84)
    bg = classes == BACKGROUND
    assert (~bg).any() and np.array_equal(solid.overlay[bg], display[bg])
    assert np.array_equal(solid.overlay[~bg], PALETTE[classes[~bg]])
    assert np.array_equal(analyse(model, image, alpha=0.0).overlay, display)
    summary = solid.summary
    assert summary["text"] == solid.seg.text and summary["width"] == 84 and summary["height"] == 64
    keys = {"digit", "area", "confidence", "alternative", "alternative_confidence", "bbox", "line"}
    assert [set(d) for d in summary["digits"]] == [keys] * len(summary["digits"])
    assert summary["lines"] == [solid.seg.text] and summary["scale"] == 1.0 and summary["digit_height"] > 10


def test_any_size_mode_and_polarity_runs_at_native_resolution(model):
    images, masks = make_split("test", n=1, seed=11, width=140)
    img, expected = images[0], truth(masks[0])
    odd = np.pad(img, ((3, 0), (0, 17)))  # 67 x 157: no multiple of anything
    paper = np.stack([255 - img * 0.85, 255 - img * 0.8, 255 - img * 0.6], axis=-1).astype(np.uint8)
    rgba = np.dstack([np.zeros_like(paper), img])  # black ink whose opacity is the stroke (drawing-app export)
    buf = io.BytesIO()
    Image.fromarray(paper).save(buf, format="JPEG", quality=90)
    for source, shape, inverted in [(png(odd), (67, 157), False), (buf.getvalue(), (64, 140), True),
                                    (png(rgba, "RGBA"), (64, 140), True), (Image.fromarray(img), (64, 140), False)]:
        r = analyse(model, source)
        assert r.seg.classes.shape == shape and r.overlay.shape == (*shape, 3)
        assert r.seg.prepared.inverted is inverted
        assert r.seg.text == expected


def test_shipped_examples_are_read_correctly(model):
    files = sorted(EXAMPLES_DIR.glob("*.png")) + sorted(EXAMPLES_DIR.glob("*.jpg"))
    assert len(files) >= 5 and any(f.suffix == ".jpg" for f in files)
    for f in files:
        r = analyse(model, f)
        assert r.seg.text.replace(" ", "") == f.stem.rsplit("_", 1)[1], f.name
        assert r.seg.prepared.inverted is f.name.startswith(("paper", "photo", "form"))  # dark ink on light


def test_reading_says_when_a_word_beside_the_number_was_left_out(model):
    r = analyse(model, EXAMPLES_DIR / "form_42.jpg")  # a printed "Room" beside a handwritten 42
    assert r.seg.text == "4 2" and len(r.seg.words_left_out) >= 2
    assert f"{len(r.seg.words_left_out)} glyphs of words or signs left out" in reading_html(r)
    assert "left out" not in reading_html(analyse(model, EXAMPLES_DIR / "m2nist_test_1_647.png"))


def fake_segmentation(h: int, w: int, boxes: list[tuple[int, int, int, int, int]]) -> Segmentation:
    classes = np.full((h, w), BACKGROUND, np.uint8)
    for digit, x0, y0, x1, y1 in boxes:
        classes[y0:y1, x0:x1] = digit
    conf = np.ones((h, w), np.float32)
    return Segmentation.from_digits(classes, Prepared(np.zeros((h, w), np.uint8)), read_digits(classes, conf))


def test_digit_masks_one_per_digit_in_its_colour():
    seg = fake_segmentation(40, 90, [(3, 5, 5, 20, 30), (7, 30, 8, 45, 35), (3, 60, 2, 80, 30)])
    (base, masks), colours = digit_masks(seg)
    assert base.shape == (40, 90, 3)
    assert [label for _, label in masks] == ["#1: 3", "#2: 7", "#3: 3"]
    assert colours == {"#1: 3": hex_colour(3), "#2: 7": hex_colour(7), "#3: 3": hex_colour(3)}
    assert masks[0][0].sum() == 15 * 25 and masks[0][0][5:30, 5:20].all() and not masks[2][0][:, :60].any()


def test_digit_masks_are_downscaled_and_grouped_when_many():
    boxes = [(i % 10, 30 * i, 10, 30 * i + 20, 40) for i in range(MAX_MASKS + 6)]
    seg = fake_segmentation(60, 30 * len(boxes), boxes)
    (base, masks), colours = digit_masks(seg, max_side=256)
    assert max(base.shape[:2]) == 256 and all(m.shape == base.shape[:2] for m, _ in masks)
    assert sorted(colours) == [f"digit {d}" for d in range(10)]


def test_reading_shows_number_table_and_polarity(model):
    r = analyse(model, next(EXAMPLES_DIR.glob("paper_*.jpg")))
    page = reading_html(r)
    assert f'<div class="number"><div>{r.seg.text}</div></div>' in page and "dark ink on light background" in page
    assert table_html(r).count("<tr>") == len(r.seg.digits) + 1
    d = r.seg.digits[0]  # each row offers the digit's likeliest other reading
    assert f'<td class="wide">{d["alternative"]} ({d["alternative_confidence"]:.2f})</td>' in table_html(r)
    blank = analyse(model, np.zeros((30, 30), np.uint8))
    assert blank.seg.digits == [] and "no digits found" in reading_html(blank) and table_html(blank) == ""
    assert f"confidence {r.seg.confidence:.2f}" in page and "confidence" not in reading_html(blank)
    assert r.summary["confidence"] == pytest.approx(r.seg.confidence, abs=1e-4)


@pytest.mark.parametrize(("sure", "flagged"), [(0.95, False), (0.7, True)])
def test_an_unsure_reading_says_so(sure, flagged):
    """The reading's line gives its confidence and, under REVIEW_BELOW, asks the user to check it."""
    seg = fake_segmentation(40, 90, [(3, 5, 5, 20, 30), (7, 30, 8, 45, 35)])
    seg.digits[1]["confidence"] = sure
    page = reading_html(Result(seg, np.zeros((40, 90, 3), np.uint8), 0.01))
    assert f"confidence {sure:.2f}" in page and ("unsure: check it" in page) == flagged


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_bad_uploads_become_clear_ui_errors(model, tmp_path, name):
    content, reason = BAD_UPLOADS[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(gr.Error) as e:
        analyse_upload(model, str(path), 0.6)
    assert name in e.value.message and reason in e.value.message


def test_upload_reaches_segapp_undecoded():
    image = UploadImage(type="filepath", render=False)
    assert image.get_block_name() == "image"  # the browser still sees a plain gr.Image
    assert image.preprocess(SimpleNamespace(path="/tmp/x.png", url=None)) == "/tmp/x.png"
    pasted = SimpleNamespace(path=None, url="data:image/png;base64," + base64.b64encode(b"PNGDATA").decode())
    assert image.preprocess(pasted) == b"PNGDATA"
    with pytest.raises(gr.Error, match="No image"):
        analyse_upload(None, None, 0.6)


def test_missing_weights_stop_the_demo_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(weights=tmp_path / "nothing here")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("segapp demo: error:") and "weights not found" in err and err.count("\n") == 1


# --- the served app ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_importing_the_demo_leaves_gradio_as_it_was():
    """Only building the app makes Gradio write result images once (serve_results_once); an import changes nothing
    in Gradio (checked in a fresh interpreter: this one has built apps)."""
    code = ("from gradio import component_meta as cm, processing_utils as pu\n"
            "before = (pu.save_pil_to_cache, cm.create_or_modify_pyi)\n"
            "import segapp.demo\n"
            "assert (pu.save_pil_to_cache, cm.create_or_modify_pyi) == before, 'gradio patched on import'\n"
            "import segapp.demo_gradio\n"
            "segapp.demo_gradio.serve_results_once()\n"
            "assert pu.save_pil_to_cache is segapp.demo_gradio._save_result_once\n")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_app_py_serves_on_gradio_port_offline(tmp_path):
    """The README's main job as a user starts it: `python app.py`, port from GRADIO_SERVER_PORT."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_SERVER_NAME": "127.0.0.1",
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}  # any outside call would fail
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        url, deadline = f"http://127.0.0.1:{port}/", time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        client = Client(url, verbose=False)
        _, summary, _ = client.predict(handle_file(str(EXAMPLES_DIR / "m2nist_test_1_647.png")), api_name="/segment")
        assert summary["text"] == "6 4 7"
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def server(model):
    app = build_app(model)
    app.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True, **LAUNCH_KWARGS)
    try:
        yield app.local_url
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(server):
    return Client(server, verbose=False)


def test_api_offers_segment_and_ping_only(client):
    assert set(client.view_api(print_info=False, return_format="dict")["named_endpoints"]) == {"/segment", "/ping"}
    assert client.predict(api_name="/ping") == "ok"


def test_segment_endpoint_reads_m2nist_test_images(client, model, tmp_path):
    """The endpoint answers what the library reads (text, digits, mask), and that is the truth on nearly all."""
    images, masks = make_split("test", n=10)
    right = 0
    for i, (img, m) in enumerate(zip(images, masks)):
        path = tmp_path / f"test_{i}.png"
        path.write_bytes(png(img))
        overlay_path, summary, mask_path = client.predict(handle_file(str(path)), api_name="/segment")
        direct = analyse(model, img).seg
        assert summary["text"] == direct.text, i
        assert [d["digit"] for d in summary["digits"]] == [d["digit"] for d in direct.digits]
        right += summary["text"] == truth(m)
        with Image.open(overlay_path) as o:
            assert o.format == "PNG" and o.size == (84, 64) and o.mode == "RGB"
        with Image.open(mask_path) as mk:  # the class-index mask: pixel value = class
            assert mk.mode == "P" and mk.size == (84, 64)
            assert np.array_equal(np.asarray(mk), direct.classes)
    assert right >= 9  # the shipped net reads 98.5% of M2NIST test numbers (int8); one miss in ten is allowed


@pytest.mark.parametrize("fmt, ext", [("HEIF", "heic"), ("AVIF", "avif")])
def test_segment_endpoint_reads_phone_formats(client, model, tmp_path, fmt, ext):
    """An iPhone's HEIC (or an AVIF) upload reaches segapp undecoded and is read as the same picture's PNG."""
    from segapp.export import on_paper
    from segapp.images import AVIF, HEIF

    if fmt not in HEIF + AVIF:
        pytest.skip(f"this Pillow reads no {fmt}")
    img = make_split("test", n=1, seed=2)[0][0]
    path = tmp_path / f"IMG_0001.{ext}"
    Image.fromarray(on_paper(img)).save(path, format=fmt, quality=90)
    _, summary, mask_path = client.predict(handle_file(str(path)), api_name="/segment")
    assert summary["text"] == analyse(model, img).seg.text != ""
    with Image.open(mask_path) as mk:
        assert mk.size == (84, 64)


def test_bad_uploads_get_messages_and_the_server_keeps_serving(client, tmp_path):
    for name, (content, reason) in BAD_UPLOADS.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(AppError, match=reason):
            client.predict(handle_file(str(path)), api_name="/segment")
    huge = tmp_path / "huge.png"
    with open(huge, "wb") as f:
        f.truncate(21 * 2**20)  # above MAX_FILE_SIZE; sparse, so cheap
    with pytest.raises(ValueError, match="maximum file size"):
        client.predict(handle_file(str(huge)), api_name="/segment")
    assert client.predict(api_name="/ping") == "ok"
    _, summary, _ = client.predict(handle_file(str(next(EXAMPLES_DIR.glob("m2nist_*.png")))), api_name="/segment")
    assert summary["text"]


# --- a real browser ---------------------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1250"]
W3C_ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class WebDriver:
    """Just enough of the W3C WebDriver protocol (spoken to chromedriver over HTTP) to drive the demo page."""

    def __init__(self, tmp: Path):
        port = free_port()
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
        self.wait_for(lambda: self._ready(), 20, "chromedriver did not start")
        options = {"binary": CHROMIUM, "args": [*CHROME_FLAGS, f"--user-data-dir={tmp / 'profile'}"]}
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = self.http.post("/session", json=caps).json()["value"]["sessionId"]

    def _ready(self) -> bool:
        try:
            return self.http.get("/status").json()["value"]["ready"]
        except httpx.HTTPError:
            return False

    def call(self, method: str, path: str, payload: dict | None = None):
        r = self.http.request(method, f"/session/{self.session}{path}", json=payload)
        value = r.json()["value"]
        if r.status_code != 200:
            raise RuntimeError(f"webdriver {path}: {value}")
        return value

    def js(self, script: str, *args):
        return self.call("POST", "/execute/sync", {"script": script, "args": list(args)})

    @staticmethod
    def wait_for(check, seconds: float, what: str):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if value := check():
                return value
            time.sleep(0.2)
        raise AssertionError(what)

    def upload(self, css: str, path: Path) -> None:
        element = self.call("POST", "/element", {"using": "css selector", "value": css})[W3C_ELEMENT]
        self.call("POST", f"/element/{element}/value", {"text": str(path)})

    def close(self) -> None:
        try:
            self.http.delete(f"/session/{self.session}")
        finally:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and CHROMEDRIVER):
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but chromium/chromedriver are missing (apt-get install chromium chromium-driver)")
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    driver = WebDriver(tmp_path)
    try:
        yield driver
    finally:
        driver.close()


@pytest.mark.slow
def test_browser_upload_shows_the_number_overlay_and_masks(browser, server, model, tmp_path):
    browser.call("POST", "/url", {"url": server})
    browser.wait_for(lambda: browser.js("return !!document.querySelector('#input-image input[type=file]')"), 60,
                     "the page did not render its upload input")
    example = EXAMPLES_DIR / "m2nist_test_1_647.png"
    browser.upload("#input-image input[type=file]", example)
    number = browser.wait_for(lambda: browser.js(
        "const n = document.querySelector('#reading .number'); return n && n.innerText.trim()"), 60,
        "no number appeared after the upload")
    assert number == analyse(model, example).seg.text
    assert browser.wait_for(lambda: browser.js("const i = document.querySelector('#overlay img');"
                                               "return i && i.complete && i.naturalWidth"), 30, "no overlay") == 84
    assert browser.js("return document.querySelectorAll('#digits table tr').length") == len(number.split()) + 1
    fetched = browser.js("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched and not [u for u in fetched if not u.startswith((server.rstrip("/"), "data:", "blob:"))]
    (tmp_path / "demo.png").write_bytes(save_screenshot(browser, "demo.png"))

    paper = next(EXAMPLES_DIR.glob("paper_*.jpg"))  # clicking an example runs it too
    browser.js("[...document.querySelectorAll('.gallery-item')].find(b => b.querySelector('img[src*=paper_]')).click()")
    browser.wait_for(lambda: browser.js("return document.querySelector('#reading .number').innerText.trim()")
                     == analyse(model, paper).seg.text, 60, "clicking the paper example gave no new number")
    assert "dark ink on light background" in browser.js("return document.querySelector('#reading .meta').innerText")

    overlay_src = browser.js("return document.querySelector('#overlay img').src")
    opacity = browser.call("POST", "/element", {"using": "css selector", "value": "input[type=number]"})[W3C_ELEMENT]
    browser.call("POST", f"/element/{opacity}/clear", {})
    browser.call("POST", f"/element/{opacity}/value", {"text": "1\ue007"})  # type 1, press Enter
    browser.wait_for(lambda: browser.js("return document.querySelector('#overlay img').src") != overlay_src, 30,
                     "moving the opacity control did not re-render the overlay")

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    browser.js("document.querySelector('#input-image button[aria-label=Clear]')?.click()")
    browser.upload("#input-image input[type=file]", bad)
    browser.wait_for(lambda: browser.js("return document.body.innerText.includes('broken.png: not an image')"), 30,
                     "no error message for a corrupt upload")
    # the message once, where the answer goes; the previous reading, overlay and table are gone
    assert browser.js("return document.body.innerText.split('broken.png: not an image').length - 1") == 1
    assert browser.js("return document.querySelector('#reading .error').innerText").count("not an image") == 1
    assert browser.js("return document.querySelector('#reading .number')") is None
    assert not browser.js("const i = document.querySelector('#overlay img'); return i && i.naturalWidth")
    assert browser.js("return document.querySelectorAll('#digits table tr').length") == 0
    assert not browser.js("return document.querySelector('.toast-body')")
    save_screenshot(browser, "demo-bad-upload.png")


def save_screenshot(browser, name: str) -> bytes:
    """The page as a PNG; also kept under $SEGAPP_SCREENSHOT_DIR (how docs/*.png are made)."""
    shot = base64.b64decode(browser.call("GET", "/screenshot"))
    if os.environ.get("SEGAPP_SCREENSHOT_DIR"):
        Path(os.environ["SEGAPP_SCREENSHOT_DIR"], name).write_bytes(shot)
    return shot


@pytest.mark.slow
def test_phone_viewport_shows_the_reading_first(browser, server):
    """On a 390x844 phone the number is read above the input, and table rows stay one line."""
    browser.call("POST", "/window/rect", {"width": 390, "height": 844})
    browser.call("POST", "/url", {"url": server})
    browser.wait_for(lambda: browser.js("return !!document.querySelector('#input-image input[type=file]')"), 60,
                     "the page did not render its upload input")
    browser.upload("#input-image input[type=file]", EXAMPLES_DIR / "m2nist_test_1_647.png")
    browser.wait_for(lambda: browser.js(
        "const n = document.querySelector('#reading .number'); return n && n.innerText.trim() == '6 4 7'"), 60,
        "no number appeared after the upload")
    top = browser.js("return [document.querySelector('#reading').getBoundingClientRect().top,"
                     " document.querySelector('#input-image').getBoundingClientRect().top]")
    assert top[0] < top[1] and top[0] < 844  # the answer first, above the fold
    rows = browser.js("return [...document.querySelectorAll('#digits table tr')]"
                      ".map(r => r.getBoundingClientRect().height)")
    assert rows and max(rows) < 40  # one text line per row
    save_screenshot(browser, "demo-phone.png")


@pytest.mark.slow
def test_browser_reads_a_number_photographed_at_a_tilt(browser, server, model, tmp_path):
    """A phone held at an angle: the number is read turned upright, and the overlay comes back at the photo's size."""
    img, _, text = mnist_line()
    photo = tmp_path / "tilted.png"
    Image.fromarray(tilted_photo(tilted(img, np.full(img.shape, BACKGROUND, np.uint8), 27)[0])).save(photo)
    assert analyse(model, photo).seg.text == text
    browser.call("POST", "/url", {"url": server})
    browser.wait_for(lambda: browser.js("return !!document.querySelector('#input-image input[type=file]')"), 60,
                     "the page did not render its upload input")
    browser.upload("#input-image input[type=file]", photo)
    browser.wait_for(lambda: browser.js(
        f"const n = document.querySelector('#reading .number'); return n && n.innerText.trim() == '{text}'"), 60,
        "the tilted number was not read")
    width = browser.wait_for(lambda: browser.js("const i = document.querySelector('#overlay img');"
                                                "return i && i.complete && i.naturalWidth"), 30, "no overlay")
    assert width == Image.open(photo).width
    save_screenshot(browser, "demo-tilted.png")


def draw(browser, element: str, strokes: list[list[tuple[int, int]]]) -> None:
    """Draws ``strokes`` (points relative to the element's centre) with W3C pointer actions: down, moves, up."""
    for points in strokes:
        acts = []
        for i, (x, y) in enumerate(points):
            acts.append({"type": "pointerMove", "origin": {W3C_ELEMENT: element}, "x": x, "y": y, "duration": 40})
            if i == 0:
                acts.append({"type": "pointerDown", "button": 0})
        acts.append({"type": "pointerUp", "button": 0})
        browser.call("POST", "/actions", {"actions": [
            {"type": "pointer", "id": "pen", "parameters": {"pointerType": "mouse"}, "actions": acts}]})


@pytest.mark.slow
def test_browser_draws_a_number_on_the_sketchpad(browser, server, tmp_path):
    """Draw "1 7 9" on the canvas with pointer events (as a mouse or finger would); the demo reads it."""
    browser.call("POST", "/url", {"url": server})
    browser.wait_for(lambda: browser.js("return !!document.querySelector('button[role=tab]')"), 60, "no tabs")
    browser.js("[...document.querySelectorAll('button[role=tab]')].find(t => t.innerText.includes('Draw')).click()")
    browser.wait_for(lambda: browser.js(
        "const b = document.querySelector('#sketch button[aria-label=Brush]');"
        "return b && b.className.includes('highlight')"),
        30, "the brush was not selected when the Draw tab opened")
    canvas = browser.call("POST", "/element", {"using": "css selector", "value": "#sketch canvas"})[W3C_ELEMENT]
    line = [(-120, y) for y in range(-70, 71, 20)]
    seven = [(-40, -70), (0, -70), (40, -70), (20, -20), (0, 30), (-10, 70)]
    nine = [(80, -70), (120, -70), (120, -10), (80, -10), (80, -70)]
    draw(browser, canvas, [line, seven, nine, [(120, -10), (120, 70)]])
    browser.js("document.querySelector('#read-drawing').click()")
    number = browser.wait_for(lambda: browser.js(
        "const n = document.querySelector('#reading .number'); return n && n.innerText.trim()"), 60,
        "no number appeared after reading the drawing")
    assert number == "1 7 9"
    assert "dark ink on light background" in browser.js("return document.querySelector('#reading .meta').innerText")
    (tmp_path / "drawing.png").write_bytes(save_screenshot(browser, "demo-drawing.png"))
