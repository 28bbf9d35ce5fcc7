"""Writes the demo's example images (run from the repo root: .venv/bin/python data/examples/make_examples.py).

* ``m2nist_test_<i>_<digits>.png``: M2NIST-recipe test images (``segapp.m2nist.make_split("test")``, 64x84, white ink
  on black), chosen to show two and three digits and a repeated digit;
* ``paper_<digits>.jpg``: a wider test composition rendered as dark blue ink on slightly uneven cream paper and saved
  as JPEG, to show polarity detection and lossy input;
* ``form_<digits>.jpg``: a printed word ("Room", matplotlib's DejaVu Sans) with a number handwritten beside it in
  MNIST test digits, dark on cream paper: the word is left out of the reading and the mask (segapp/words.py).

The file names carry the true digits left to right. Output is deterministic.
"""

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segapp.m2nist import load_mnist, make_split
from segapp.render import read_digits

OUT = Path(__file__).resolve().parent
PICK = (0, 1, 3, 11, 18)  # indices into the test split: two and three digits, a repeated digit


def truth(mask: np.ndarray) -> str:
    return "".join(str(d["digit"]) for d in read_digits(mask, np.ones(mask.shape, np.float32)))


def main() -> None:
    images, masks = make_split("test", n=max(PICK) + 1)
    for i in PICK:
        Image.fromarray(images[i]).save(OUT / f"m2nist_test_{i}_{truth(masks[i])}.png", optimize=True)
    images, masks = make_split("test", n=1, seed=7, width=168)
    ink = images[0].astype(np.float32)[..., None] / 255.0
    rng = np.random.default_rng(0)
    h, w = ink.shape[:2]
    shade = np.linspace(0.0, 12.0, w, dtype=np.float32)[None, :, None]  # light falls off to the right
    paper = np.array([247, 242, 228], np.float32) - shade + rng.normal(0, 2.5, (h, w, 1)).astype(np.float32)
    pen = np.array([28, 38, 96], np.float32)
    rgb = np.clip(paper * (1 - ink) + pen * ink, 0, 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(OUT / f"paper_{truth(masks[0])}.jpg", quality=90)
    form()


def form(number: str = "42") -> None:
    """A printed "Room" and a number written beside it in MNIST test digits (the first of each class, enlarged to
    36 px), dark ink on cream paper: the kind of line a form or a door sign holds."""
    digits, labels = load_mnist("test")
    h, w = 56, 200 + 30 * len(number) + 30
    word = Image.new("L", (w, h), 0)  # ink: 255 full
    font = ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), 30)
    ImageDraw.Draw(word).text((20, 12), "Room", fill=255, font=font)
    ink = np.asarray(word, np.float32) / 255.0
    for k, d in enumerate(number):
        glyph = Image.fromarray(digits[int(np.flatnonzero(labels == int(d))[0])]).resize((36, 36), Image.BILINEAR)
        x = 170 + 30 * k
        ink[12:48, x : x + 36] = np.maximum(ink[12:48, x : x + 36], np.asarray(glyph, np.float32) / 255.0)
    grain = np.random.default_rng(1).normal(0, 2.0, (h, w, 1)).astype(np.float32)
    paper, pen = np.array([246, 241, 226], np.float32) + grain, np.array([30, 34, 60], np.float32)
    rgb = np.clip(paper * (1 - ink[..., None]) + pen * ink[..., None], 0, 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(OUT / f"form_{number}.jpg", quality=90)


if __name__ == "__main__":
    main()

# photo_800.jpg (a phone-like photo of three MNIST test digits, 1200x900) was made with the robustness
# benchmark's generator:
#   img = Image.open(io.BytesIO(benchmarks.robustness.big_photo(np.random.default_rng(7))[0]))
#   img.resize((1200, 900), Image.LANCZOS).save("photo_800.jpg", quality=85)
