"""The shortcuts `segapp predict` takes on small clean canvases give exactly what the general code gives."""

import io

import numpy as np
import pytest
from PIL import Image

from segapp.images import Prepared
from segapp.inference import InferenceConfig, Segmenter
from segapp.ink_parts import ink_height, measure_ink, size_groups
from segapp.mask_files import mask_image, mask_png, png_bytes
from segapp.normalise import normalise
from segapp.overlays import overlay, overlay_gray


@pytest.fixture(scope="module")
def segmenter(tiny_weights):
    return Segmenter(tiny_weights, InferenceConfig(device="cpu", amp="off", backend="torch"))


def variants(images, rng):
    """M2NIST canvases as they are, inverted, with faint noise on the background, and with faint strokes."""
    for im in images[:12]:
        noisy = im.astype(int)
        noisy[noisy == 0] = rng.integers(0, 4, int((noisy == 0).sum()))
        faint = im.copy()
        faint[(faint > 0) & (faint < 40)] = 3
        yield from (im, 255 - im, noisy.astype(np.uint8), faint)
    yield from (np.zeros((20, 20), np.uint8), np.full((20, 20), 255, np.uint8))
    yield rng.integers(0, 256, (30, 40), np.uint8)


def test_normalise_fast_path_equals_the_general_one(test_split, rng):
    for im in variants(test_split[0], rng):
        for inverted in (None, False, True):
            fast, fast_inv = normalise(im, inverted)
            general, general_inv = normalise(im.astype(np.uint16), inverted)  # not uint8: the general path
            assert fast_inv == general_inv and np.array_equal(fast, general)


def test_one_measurement_serves_height_and_groups(test_split):
    for im in test_split[0][:10]:
        parts = measure_ink(im)
        assert parts.height == ink_height(im) and size_groups(parts, 1.0, im.shape) == size_groups(im, 1.0, im.shape)


def test_batched_net_outputs_equal_per_image_postprocess(segmenter, test_split):
    inputs = [segmenter.preprocess(Prepared(im)) for im in test_split[0][:8]]
    inputs = [n for n in inputs if n.image.shape == inputs[0].image.shape]
    outs = segmenter.net(inputs)
    for n, (logits, small, conf, runner) in zip(inputs, outs):
        batched = segmenter.postprocess(n, None, small, conf, runner)  # what predict's file threads do
        alone = segmenter.postprocess(n, logits)  # softmax of this image's logits alone
        assert np.array_equal(batched.classes, alone.classes) and batched.digits == alone.digits


def test_run_leaves_native_inputs_pending_and_finishing_them_is_infer(segmenter, test_split):
    """The one inference path: Segmenter.run postprocesses rescaled inputs and leaves those seen at their own size
    pending (predict finishes them in its file threads); finished, they are exactly what infer gives."""
    import cv2

    from segapp.inference import Pending

    native = [segmenter.preprocess(Prepared(im)) for im in test_split[0][:4]]
    big = [segmenter.preprocess(Prepared(cv2.resize(im, (252, 192)))) for im in test_split[0][:2]]
    for inputs in (native, big):
        inputs = [n for n in inputs if n.image.shape == inputs[0].image.shape and not n.groups]
        results = segmenter.run(inputs)
        assert all(isinstance(r, Pending) == (n.scale == 1.0) for n, r in zip(inputs, results))
        for done, direct in zip(map(segmenter.finish, results), segmenter.infer(inputs)):
            assert np.array_equal(done.classes, direct.classes) and done.digits == direct.digits
    assert any(isinstance(r, Pending) for r in segmenter.run(native[:1]))


def test_a_file_whose_postprocessing_fails_is_a_row_not_a_crash(segmenter, test_split, tmp_path):
    from segapp.predict import complete

    class Broken:
        def finish(self, result):
            raise ValueError("boom")

    from segapp.predict_plan import Item

    item = Item(src=tmp_path / "a.png", rel="a.png")
    row = complete(Broken(), item, object(), tmp_path, 0.6, 1)
    assert row["status"].startswith("error: reading the class map failed") and "boom" in row["status"]


@pytest.mark.parametrize("level", [0, 1, 9])
def test_png_writer_matches_pillow(test_split, level):
    images, masks = test_split
    for im, classes in zip(images[:6], masks[:6]):
        classes = classes.astype(np.uint8)
        buf = io.BytesIO()
        mask_image(classes).save(buf, format="PNG", compress_level=level)
        assert mask_png(classes, level) == buf.getvalue()  # masks: the very bytes Pillow writes
        for alpha in (0.0, 0.6, 1.0):
            rgb = overlay_gray(im, classes, alpha)
            assert np.array_equal(rgb, overlay(np.repeat(im[..., None], 3, axis=2), classes, alpha))
            with Image.open(io.BytesIO(png_bytes(rgb, compress_level=level))) as back:
                assert back.mode == "RGB" and np.array_equal(np.asarray(back), rgb)
