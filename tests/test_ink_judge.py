"""The ink judge (segapp.ink_judge): its shape, files and training, and how the masks follow it (segapp.ink)."""

import json

import cv2
import numpy as np
import pytest
import torch

from segapp.classes import BACKGROUND
from segapp.cli import main
from segapp.images import prepare
from segapp.ink import INK_LEVEL, JUDGED_HEIGHT, QUARTER, ink_refine, on_paper, stretched
from segapp.ink_judge import InkJudge, InkJudgeConfig, clean_ink, load_ink_judge, save_ink_judge
from segapp.ink_judge_train import PICTURE, InkTrainConfig, picture
from segapp.m2nist import digit_pool
from segapp.model import WeightsError


@pytest.mark.parametrize("shape", [(1, 1), (13, 17), (48, 128)])
def test_the_judge_keeps_every_size_pixel_for_pixel(shape):
    judge = InkJudge(InkJudgeConfig(width=4)).eval()
    ink = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out = clean_ink(judge, ink)
    assert out.shape == shape and out.dtype == np.uint8
    assert judge.view() == 11  # dilations 1-2-1-1


def test_judge_files_round_trip_and_refuse_what_does_not_fit(tmp_path):
    judge = InkJudge(InkJudgeConfig(width=4, dilations=(1, 2))).eval()
    ink = np.random.default_rng(1).integers(0, 256, (20, 30), dtype=np.uint8)
    save_ink_judge(judge, tmp_path / "ink")
    assert json.loads((tmp_path / "ink" / "config.json").read_text())["dilations"] == [1, 2]
    again = load_ink_judge(tmp_path / "ink")
    assert again.config == judge.config and np.array_equal(clean_ink(again, ink), clean_ink(judge, ink))
    assert load_ink_judge(tmp_path / "none") is None
    cfg = json.loads((tmp_path / "ink" / "config.json").read_text())
    (tmp_path / "ink" / "config.json").write_text(json.dumps({**cfg, "width": 8}))
    with pytest.raises(WeightsError, match="train-ink"):
        load_ink_judge(tmp_path / "ink")


@pytest.mark.parametrize("bad", [dict(width=2), dict(dilations=()), dict(dilations=(1, 0)), dict(width=True)])
def test_a_judge_config_refuses_shapes_that_cannot_be(bad):
    with pytest.raises(ValueError, match="ink judge"):
        InkJudgeConfig(**bad)


@pytest.mark.parametrize("bad, flag", [(dict(pictures=10), "--pictures"), (dict(photo=1.5), "--photo"),
                                       (dict(epochs=0), "--epochs")])
def test_the_training_config_refuses_what_could_only_fail(bad, flag):
    with pytest.raises(Exception, match=flag):
        InkTrainConfig(**bad)


@pytest.fixture(scope="module")
def mnist():
    return digit_pool("train")


def test_the_judge_sees_a_light_handed_stroke_as_a_dark_one_but_grain_stays_grain():
    """A stroke at a quarter of its neighbour's ink comes out at full ink, as the dark one does; a speck of grain
    under INK_LEVEL is scaled only by INK_LEVEL (it has no stroke near to be measured against)."""
    ink = np.zeros((20, 40), np.uint8)
    ink[5:15, 8:10], ink[5:15, 30:32], ink[2, 20] = 240, 60, 12
    out = stretched(ink, 3)
    assert out[5:15, 8:10].min() == 255 and out[5:15, 30:32].min() == 255
    assert out[2, 20] == int(12 * 255 / INK_LEVEL) and out[ink == 0].max() == 0


def test_only_a_photo_or_scan_on_paper_is_judged_not_a_drawing():
    """A drawing (exact zeros around its ink, either polarity, however faint its resampled edges) is its own clean
    ink; a photo's paper has grain everywhere."""
    rng = np.random.default_rng(0)
    canvas = np.zeros((45, 59), np.uint8)
    canvas[10:30, 20:23] = 255
    canvas = cv2.GaussianBlur(canvas, (0, 0), 1.0)  # faint-edged, as a canvas at 0.7x is
    photo = np.clip(200 - 0.6 * canvas + rng.normal(0, 4, canvas.shape), 0, 255).astype(np.uint8)
    assert not on_paper(canvas, inverted=False) and not on_paper(255 - canvas, inverted=True)
    assert on_paper(photo, inverted=True)


def test_a_light_handed_training_picture_keeps_its_strokes_in_the_target(mnist):
    """A picture written partly light-handed has the same clean ink as written evenly: only what the judge sees
    changes (the same seed draws the same digits)."""
    seen, clean = picture(np.random.default_rng(5), *mnist, photo=0.0, sharp=0.0, light=1.0)
    even_seen, even = picture(np.random.default_rng(5), *mnist, photo=0.0, sharp=0.0, light=0.0)
    assert np.array_equal(clean, even) and not np.array_equal(seen, even_seen)


@pytest.mark.parametrize("photo, sharp", [(1.0, 0.0), (0.0, 1.0)])
def test_a_training_picture_is_its_clean_ink_seen_through_a_camera_or_a_resampling(mnist, photo, sharp):
    seen, clean = picture(np.random.default_rng([3, int(photo)]), *mnist, photo=photo, sharp=sharp)
    again, _ = picture(np.random.default_rng([3, int(photo)]), *mnist, photo=photo, sharp=sharp)
    assert seen.shape == clean.shape == PICTURE and seen.dtype == clean.dtype == np.uint8
    assert np.array_equal(seen, again)  # seeded
    stroke = clean >= QUARTER
    assert stroke.sum() > 50
    assert not np.array_equal(seen >= QUARTER, stroke)  # what the judge sees is not the answer
    assert seen[stroke].mean() > 2 * max(seen[clean == 0].mean(), 1.0)  # but the strokes stand out in it
    if sharp:  # a sharpened picture's strokes fade over at most a pixel: few faint clean pixels
        faint = (clean > 0) & (clean < QUARTER)
        assert faint.sum() < 0.5 * stroke.sum()


def test_train_ink_writes_a_judge_that_loads(tmp_path):
    out = tmp_path / "ink"
    main(["train-ink", "--pictures", "64", "--epochs", "1", "--batch-size", "16", "--width", "4", "--workers", "0",
          "--out", str(out), "--quiet"])
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "args.json", "metrics.json"}
    assert json.loads((out / "args.json").read_text())["pictures"] == 64
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["iou"] <= 1 and metrics["train_pictures"] == 64
    judge = load_ink_judge(out)
    assert isinstance(judge, InkJudge) and torch.is_tensor(next(judge.parameters()))


def _small_blurred_digit() -> tuple[np.ndarray, np.ndarray]:
    """A 14-px-tall ring of dark ink photographed on grey paper (blurred): (RGB image, net-style class map with the
    ring's blurred halo coloured as a 0, as upsampled logits colour it)."""
    clean = np.zeros((40, 40), np.float32)
    cv2.circle(clean, (20, 20), 6, 1.0, 2)
    gray = 200 - 150 * cv2.GaussianBlur(clean, (0, 0), 1.0)
    rgb = np.repeat(np.clip(gray, 0, 255).astype(np.uint8)[..., None], 3, 2)
    full = np.full((40, 40), BACKGROUND, np.uint8)
    full[cv2.dilate((clean > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] = 0
    return rgb, full


def test_small_digits_masks_follow_the_judge_where_one_is_given():
    """The judge decides a stroke's edge: a pixel next to a stroke it sees is kept only where it sees ink too."""
    rgb, full = _small_blurred_digit()
    p = prepare(rgb, "ring.png")
    seen = []

    def judge(ink: np.ndarray) -> np.ndarray:  # a judge that calls stroke only the strongest ink
        seen.append(ink)
        return np.where(ink >= 200, 255, 0).astype(np.uint8)

    plain, judged = full.copy(), full.copy()
    ink_refine(plain, p, 1.0, digit_height=14.0)
    ink_refine(judged, p, 1.0, digit_height=14.0, judge=judge)
    assert len(seen) == 1 and seen[0].shape == (40, 40)
    core = seen[0] >= 200
    edge = (cv2.dilate(core.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0) & ~core
    assert core.any() and (judged != BACKGROUND).any()
    assert not ((judged != BACKGROUND) & edge).any()  # the stroke's edge is the judge's ...
    assert (judged != BACKGROUND).sum() < (plain != BACKGROUND).sum()  # ... not the thresholds' wider one


@pytest.mark.parametrize("seen", [255, 0])
def test_beside_an_unsure_digit_the_judge_takes_pixels_away_but_adds_none(seen):
    """A judge that lit a speck the thresholds left dark kept a digit on a blank page (reporting seed 500, session
    40), and one that widened the thresholds' ink by a pixel made grain the net was unsure of a "6" (seed 110, session
    42): where a digit is unsure, whatever the judge sees, the mask is the thresholds' or less. A judge that sees ink
    everywhere changes nothing; one that sees none leaves the thresholds' strokes as they were."""
    rgb, full = _small_blurred_digit()
    p = prepare(rgb, "ring.png")
    plain, judged = full.copy(), full.copy()
    ink_refine(plain, p, 1.0, digit_height=14.0, sure=0.7)
    ink_refine(judged, p, 1.0, digit_height=14.0, sure=0.7,
               judge=lambda ink: np.full(ink.shape, seen, np.uint8))
    assert (plain != BACKGROUND).any()
    assert np.array_equal(judged, plain)


def test_beside_sure_digits_the_judge_keeps_a_faint_edge_the_net_coloured_and_nothing_beyond():
    """Where every digit is sure, the judge may keep a pixel next to the thresholds' ink (a light-handed stroke's
    faint edge), but only inside the net's own mask and within a pixel of that ink."""
    rgb, full = _small_blurred_digit()
    p = prepare(rgb, "ring.png")
    plain, judged = full.copy(), full.copy()
    ink_refine(plain, p, 1.0, digit_height=14.0, sure=0.99)
    ink_refine(judged, p, 1.0, digit_height=14.0, sure=0.99, judge=lambda ink: np.full(ink.shape, 255, np.uint8))
    near = cv2.dilate((plain != BACKGROUND).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert (judged != BACKGROUND).sum() > (plain != BACKGROUND).sum()  # an edge kept ...
    assert not ((judged != BACKGROUND) & ~(near & (full != BACKGROUND))).any()  # ... inside the net's mask only


def _never(ink: np.ndarray) -> np.ndarray:
    raise AssertionError("the judge ran where the thresholds should")


def test_the_judge_is_not_asked_about_tall_digits():
    rgb, full = _small_blurred_digit()
    ink_refine(full, prepare(rgb, "ring.png"), 1.0, digit_height=JUDGED_HEIGHT + 1, judge=_never)
    assert (full != BACKGROUND).any()


def test_the_judge_is_not_asked_about_a_clean_image():
    """A lossless white-on-black drawing's ink is its clean ink: the thresholds follow it (the judge cost clean
    resampled canvases 0.026 mIoU on development seed 103)."""
    clean = np.zeros((40, 40), np.uint8)
    cv2.circle(clean, (20, 20), 6, 255, 2, lineType=cv2.LINE_AA)
    full = np.full((40, 40), BACKGROUND, np.uint8)
    full[cv2.dilate(clean, np.ones((3, 3), np.uint8)) > 0] = 0
    ink_refine(full, prepare(clean, "ring.png"), 1.0, digit_height=14.0, judge=_never)
    assert (full != BACKGROUND).any()
