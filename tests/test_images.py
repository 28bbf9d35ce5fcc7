"""User image files -> model input: formats, polarity, limits, and hostile bytes."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from imagefiles import png_claiming
from PIL import Image

from segapp.classes import BACKGROUND
from segapp.images import AVIF, HEIF, ImageError, Prepared, prepare
from segapp.normalise import pixel_noise


def encode(array, fmt="PNG", mode=None, **kw):
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format=fmt, **kw)
    return buf.getvalue()


def fg_iou(gray, mask):
    pred, true = gray > 0, mask != BACKGROUND
    return (pred & true).sum() / (pred | true).sum()


def test_clean_m2nist_image_passes_unchanged(test_split):
    image = test_split[0][0]
    p = prepare(encode(image), "a.png")
    assert np.array_equal(p.gray, image) and not p.inverted
    assert p.display.shape == (*image.shape, 3)


def test_dark_ink_on_paper_is_inverted_exactly(test_split):
    image = test_split[0][1]
    p = prepare(encode(255 - image), "paper.png")
    assert p.inverted and "inverted" in p.polarity
    assert np.array_equal(p.gray, image)


@pytest.mark.parametrize("quality, min_iou", [(75, 0.7), (90, 0.85)])
def test_paper_jpeg_keeps_the_strokes(test_split, quality, min_iou):
    images, masks = test_split
    rgb = np.repeat((255 - images[2])[..., None], 3, axis=2)
    p = prepare(encode(rgb, "JPEG", quality=quality), "paper.jpg")
    assert p.inverted
    assert fg_iou(p.gray, masks[2]) > min_iou  # JPEG ringing removed, faint edge pixels mostly kept


def test_rgba_transparent_background_keeps_dark_ink():
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[8:24, 14:18] = (0, 0, 0, 255)  # opaque black stroke on a fully transparent page
    p = prepare(encode(rgba), "ink.png")
    assert p.inverted and p.gray[16, 15] > 200 and p.gray[2, 2] == 0


def test_sixteen_bit_and_palette_inputs(test_split):
    image = test_split[0][3]
    sixteen = prepare(encode(image.astype(np.uint16) * 257), "deep.png")
    assert np.abs(sixteen.gray.astype(int) - image).max() <= 1
    palette = Image.fromarray(image).convert("P")
    buf = io.BytesIO()
    palette.save(buf, format="PNG")
    assert fg_iou(prepare(buf.getvalue(), "pal.png").gray, test_split[1][3]) > 0.9


def test_exif_rotation_is_applied():
    img = Image.fromarray(np.zeros((20, 40), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert prepare(buf.getvalue(), "phone.jpg").gray.shape == (40, 20)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    assert prepare(buf.getvalue(), "anim.gif").gray.max() == 0


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (b"hello, I am a text file\n", "not an image"),
        (png_claiming(100_000, 100_000), "above the limit"),
        (png_claiming(1, 1), "too small"),
        (encode(np.zeros((3, 2), np.uint8)), "too small"),
    ],
    ids=["zero-bytes", "text", "bomb-header", "1x1", "3x2"],
)
def test_bad_bytes_give_one_line_errors_naming_the_file(data, reason):
    with pytest.raises(ImageError, match=reason) as err:
        prepare(data, "input/x.png")
    assert str(err.value).startswith("input/x.png:") and "\n" not in str(err.value)


def test_an_oversized_image_gets_one_message_whatever_the_warning_filters():
    """Between 1x and 2x the limit Pillow only warns; the error must not depend on filters that other code
    sets (a catch_warnings() block in another thread once changed a file's message mid-run)."""
    import warnings

    messages = set()
    for action in ("ignore", "always", "default"):
        with warnings.catch_warnings():
            warnings.simplefilter(action)
            with pytest.raises(ImageError) as err:
                prepare(png_claiming(5000, 5000), "big.png")
            messages.add(str(err.value))
    assert messages == {"big.png: 5000x5000 pixels is above the limit of 16,777,216; downscale the image first"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # python -W error: still one line naming the file, never a traceback
        with pytest.raises(ImageError, match="^big.png: above the limit"):
            prepare(png_claiming(5000, 5000), "big.png")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_refused(test_split, fmt):
    data = encode(test_split[0][0], fmt)
    with pytest.raises(ImageError, match="truncated|corrupt|not an image"):
        prepare(data[: len(data) // 2], f"cut.{fmt.lower()}")


def test_paths_are_read_and_folders_refused(tmp_path, test_split):
    (tmp_path / "a.png").write_bytes(encode(test_split[0][0]))
    assert prepare(tmp_path / "a.png").gray.shape == (64, 84)
    with pytest.raises(ImageError, match="folder"):
        prepare(tmp_path)


def test_very_wide_image_keeps_its_size():
    assert prepare(encode(np.zeros((16, 4000), np.uint8)), "wide.png").gray.shape == (16, 4000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash(data):
    try:
        p = prepare(data, "fuzz.bin")
    except ImageError:
        return
    assert p.gray.dtype == np.uint8 and p.gray.ndim == 2


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    img = np.zeros((20, 28), np.uint8)
    img[4:16, 10:14] = 255
    Image.fromarray(img).save(buf, format=fmt)
    return buf.getvalue()


VALID = {fmt: _encoded(fmt) for fmt in ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF") + HEIF + AVIF}


@pytest.mark.parametrize("fmt", HEIF + AVIF)
def test_phone_formats_read_like_png(fmt):
    """HEIC (an iPhone's camera) and AVIF decode to the picture a PNG of it gives, up to their compression."""
    from segapp.m2nist import make_split

    img = np.dstack([255 - make_split("test", n=1, seed=4)[0][0]] * 3)  # dark ink on white, RGB
    encoded, lossless = io.BytesIO(), io.BytesIO()
    Image.fromarray(img).save(encoded, format=fmt, quality=90)
    Image.fromarray(img).save(lossless, format="PNG")
    a, b = prepare(encoded.getvalue(), f"x.{fmt.lower()}"), prepare(lossless.getvalue(), "x.png")
    assert a.raw.shape == b.raw.shape and np.abs(a.raw.astype(int) - b.raw).mean() < 4


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.data())
def test_mutated_real_files_never_crash(fmt, data):
    """Valid files with bytes overwritten, cut short or extended reach deep into each decoder."""
    b = bytearray(VALID[fmt])
    for _ in range(data.draw(st.integers(1, 8))):
        b[data.draw(st.integers(0, len(b) - 1))] = data.draw(st.integers(0, 255))
    b = b[: data.draw(st.integers(1, len(b)))] + data.draw(st.binary(max_size=16))
    try:
        p = prepare(bytes(b), f"mutated.{fmt.lower()}")
    except ImageError as e:
        assert str(e).startswith("mutated.") and "\n" not in str(e)
        return
    assert p.gray.dtype == np.uint8 and p.gray.ndim == 2 and min(p.gray.shape) >= 4


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
        shape=hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=24),
    )
)
def test_random_arrays_never_crash(array):
    try:
        p = prepare(array, "array")
    except ImageError:
        return
    assert p.gray.shape == array.shape[:2] and p.gray.dtype == np.uint8


def test_pixel_noise_sees_the_grain_not_the_lighting():
    """Uneven lighting spreads the background's levels; the noise floor must not count it as noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:200].astype(np.float32)
    lit = 40.0 * xx / 200 + 20.0 * yy / 120 + rng.normal(0, 4.0, (120, 200)).astype(np.float32)
    assert 3.0 < pixel_noise(lit) < 5.0
    assert 1.4826 * np.median(np.abs(lit - np.median(lit))) > 10.0  # what the whole background's spread says


def test_the_net_sees_a_faint_hairline_the_height_estimate_ignores():
    """A calligraphic pen's hairline in a small photo lit unevenly from top to bottom (too small for the background
    grid to follow the light): faint, but far above the pixel noise. The net's image keeps it (net_gray) and its
    paper stays black; the conservative image the digit height is measured on (gray) drops the hairline."""
    rng = np.random.default_rng(1)
    yy = np.mgrid[0:36, 0:160][0].astype(np.float32)
    paper = 200.0 - 40.0 * yy / 36 + rng.normal(0, 2.0, (36, 160)).astype(np.float32)
    paper[6:30, 30:33] -= 150  # a bold downstroke
    paper[6:30, 90] -= 35  # a hairline: 17 sigma of pixel noise, under the lighting's spread
    p = Prepared(np.clip(paper, 0, 255).astype(np.uint8))
    net, hair = p.net_gray, (slice(8, 28), 90)
    assert net[hair].min() > 0 and net[8:28, 30:33].min() > 0
    assert (net[:, 110:150] == 0).mean() > 0.95  # the light the background grid could not follow is no ink
    assert p.gray[hair].mean() < 0.2 * net[hair].mean()
