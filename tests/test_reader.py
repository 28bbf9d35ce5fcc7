"""The digit reader (segapp/reader.py), its training job (segapp/reader_train.py) and the second reading it gives
each digit the net found (segapp/reread.py)."""

import json
import shutil

import numpy as np
import pytest
import torch
from imagefiles import MPL_FONTS

from segapp.alternatives import runner_up
from segapp.classes import BACKGROUND, NUM_CLASSES, VOID
from segapp.cli import main
from segapp.inference import InferenceConfig, Segmenter
from segapp.model import DEFAULT_WEIGHTS, WeightsError, load_pretrained
from segapp.reader import (
    NOT_DIGIT,
    READER_DIR,
    SIGN,
    SIGNS_DIR,
    DigitReader,
    ReaderConfig,
    canonical,
    load_reader,
    read_crops,
    save_reader,
)
from segapp.reader_train import LETTER, SIGN_LABEL, ReaderTrainConfig, digit_crops, vary
from segapp.reread import reread


class Says(DigitReader):
    """A reader that reads every crop as ``digit`` with probability ``p``, whatever it shows."""

    def __init__(self, digit: int, p: float = 1.0 - 1e-9):
        super().__init__(ReaderConfig(width=4))
        self.digit, self.p = digit, p

    def forward(self, x):
        out = torch.full((len(x), 10), float(np.log((1 - self.p) / 9)))
        out[:, self.digit] = float(np.log(self.p))
        return out


@pytest.mark.parametrize("shape", [(40, 9), (9, 40), (23, 17), (5, 5)])
def test_canonical_fits_the_ink_into_20_px_centred_by_mass(shape):
    ink = np.zeros((50, 60), np.float32)
    ink[3 : 3 + shape[0], 7 : 7 + shape[1]] = 1.0
    c = canonical(ink)
    assert c.shape == (28, 28) and c.dtype == np.float32
    ys, xs = np.nonzero(c > 0.5)
    assert max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1) == 20  # the long side fills the 20 px box
    cy, cx = (np.indices(c.shape) * c).reshape(2, -1).sum(1) / c.sum()
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1


def test_canonical_of_no_ink_is_none():
    assert canonical(np.zeros((30, 30), np.float32)) is None
    assert canonical(np.full((30, 30), 0.1, np.float32)) is None  # the faint edge alone is no digit


@pytest.mark.parametrize("classes", [10, 11])
def test_the_reader_reads_a_batch_of_crops_as_probabilities(classes):
    reader = DigitReader(ReaderConfig(width=4, classes=classes)).eval()
    with torch.no_grad():
        reader.head[1].bias[-1] = 3.0  # the last class favoured: the tenth digit, or "not a digit"
    p, p_not = read_crops(reader, [np.zeros((28, 28), np.float32)] * 3)
    assert p.shape == (3, 10) and np.allclose(p.sum(1), 1.0) and p_not.shape == (3,)
    if classes == 10:
        assert not p_not.any() and (p.argmax(1) == 9).all()  # a reader of digits alone is never sure of no digit
    else:  # the favoured class is "not a digit": the digits' own distribution stays even
        assert (p_not > 0.5).all() and (p.max(1) < 0.3).all()


@pytest.mark.parametrize("classes", [9, 13, True])
def test_a_reader_has_ten_eleven_or_twelve_classes(classes):
    with pytest.raises(ValueError, match="classes"):
        ReaderConfig(classes=classes)


@pytest.mark.parametrize("classes", [10, 11, 12])
def test_save_and_load_round_trip(tmp_path, classes):
    r = DigitReader(ReaderConfig(width=8, classes=classes)).eval()
    save_reader(r, tmp_path / "reader", extra={"held_accuracy": 0.5})
    back = load_reader(tmp_path / "reader")
    assert back.config == r.config
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(back(x), r(x))


def test_a_weights_folder_without_a_reader_reads_with_the_net_alone(tmp_path):
    assert load_reader(tmp_path) is None


@pytest.mark.parametrize("damage", ["truncate", "width", "config"])
def test_a_broken_reader_is_one_clear_error(tmp_path, damage):
    folder = tmp_path / "reader"
    save_reader(DigitReader(ReaderConfig(width=8)), folder)
    if damage == "truncate":
        (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:100])
    elif damage == "width":
        (folder / "config.json").write_text(json.dumps({"width": 16}))
    else:
        (folder / "config.json").write_text(json.dumps({"width": "wide"}))
    with pytest.raises(WeightsError, match=str(folder)) as e:
        load_reader(folder)
    assert "\n" not in str(e.value)


def test_digit_crops_keep_whole_digits_only():
    image = np.zeros((40, 60), np.float32)
    label = np.full((40, 60), BACKGROUND, np.uint8)
    image[5:25, 5:12] = 1.0
    label[5:25, 5:12] = 7  # a whole 7
    label[4, 5:12] = VOID  # its faint edge
    image[20:39, 40:47], label[20:40, 40:47] = 1.0, 3  # a 3 cut by the canvas's bottom edge
    image[5:8, 30:33], label[5:8, 30:33] = 1.0, 1  # a speck of a 1
    crops = digit_crops(image, label)
    assert [c for _, c in crops] == [7]
    assert crops[0][0].shape == (28, 28)


def test_digit_crops_take_letters_as_not_a_digit_and_as_wide_as_two_and_signs_as_signs():
    image = np.zeros((40, 90), np.float32)
    label = np.full((40, 90), BACKGROUND, np.uint8)
    image[5:25, 5:12], label[5:25, 5:12] = 1.0, 4  # a digit
    image[8:24, 20:52], label[8:24, 20:52] = 1.0, LETTER  # an "m": twice as wide as tall
    image[8:17, 60:66], label[8:17, 60:66] = 1.0, LETTER  # a letter under MIN_LETTER_HEIGHT: a blur
    image[4:30, 72:78], label[4:30, 72:78] = 1.0, SIGN_LABEL  # a slash, taller than the digit
    crops = digit_crops(image, label)
    assert sorted(c for _, c in crops) == [4, NOT_DIGIT, SIGN]


def test_vary_changes_each_crop_its_own_way_and_keeps_the_ink_in_range():
    crops = torch.zeros(6, 1, 28, 28)
    crops[:, :, 4:24, 12:16] = 1.0  # six identical upright bars (a "1")
    out = vary(crops.clone(), torch.Generator().manual_seed(0))
    again = vary(crops.clone(), torch.Generator().manual_seed(0))
    assert out.shape == crops.shape and torch.equal(out, again)  # seeded: a run can be repeated
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert all(not torch.allclose(out[i], out[j]) for i in range(6) for j in range(i))  # each its own variation
    mass = out.sum((1, 2, 3)) / crops.sum((1, 2, 3))
    assert bool(((mass > 0.5) & (mass < 1.6)).all())  # the stroke varied, not lost or smeared over the crop
    centre = (out[:, 0].sum(1) * torch.arange(28)).sum(1) / out[:, 0].sum((1, 2))
    assert bool(((centre - 13.5).abs() < 3).all())  # turned and stretched about the middle: still centred


def test_low_res_rebuilds_a_crop_from_a_few_cells_at_full_ink():
    crops = torch.zeros(8, 1, 28, 28)
    crops[:, :, 4:24, 12:14] = 1.0  # a thin upright bar: averaged into cells it would come back grey and wide
    out = vary(crops.clone(), torch.Generator().manual_seed(1), 0.0, low_res=1.0)  # no turn, shear or stretch
    assert float(out.min()) >= 0.0 and torch.allclose(out.amax((1, 2, 3)), torch.ones(8))  # ink back at full
    spread = ((out > 0.25).sum((1, 2, 3)) / (crops > 0.25).sum((1, 2, 3)))
    assert bool((spread > 1.2).all())  # blurred wider than the 2 px stroke ...
    centre = (out[:, 0].sum(1) * torch.arange(28)).sum(1) / out[:, 0].sum((1, 2))
    assert bool(((centre - 12.5).abs() < 1.5).all())  # ... where it was
    assert len({round(float(v), 3) for v in out.sum((1, 2, 3))}) > 1  # cells of more than one size


@pytest.mark.parametrize("seed", range(3))
def test_proportions_move_a_digits_parts_against_each_other_and_keep_its_extent(seed):
    crops = torch.zeros(16, 1, 28, 28)
    crops[:, :, 4:24, 13:15] = 1.0  # a stem over the digit's whole height (20 px, MNIST's box) ...
    crops[:, :, 13:15, 8:20] = 1.0  # ... crossed by a bar at its middle
    out = vary(crops.clone(), torch.Generator().manual_seed(seed), 0.0, proportions=1.0)
    rows = (out[:, 0] > 0.5).any(2)  # rows with ink
    top = rows.float().argmax(1)
    bottom = 27 - rows.flip(1).float().argmax(1)
    assert bool(((top - 4).abs() <= 1).all() and ((bottom - 23).abs() <= 1).all())  # the digit keeps its extent
    bar = out[:, 0].sum(2).argmax(1)  # the bar's row: the one with the most ink
    assert int(bar.max() - bar.min()) >= 3  # ... and its parts move against each other, each crop its own way
    assert torch.equal(vary(crops.clone(), torch.Generator().manual_seed(seed), 0.0, proportions=1.0), out)


@pytest.mark.parametrize("bad", [{"canvases": 10}, {"epochs": 0}, {"lr": 2.0}, {"width": True}, {"augment": -1},
                                 {"low_res": 1.5}, {"proportions": -0.1}, {"letters": 1.0}, {"letter_chars": "Ab1"},
                                 {"letter_chars": ""}, {"letter_fonts": ("/nonexistent/fonts",)},
                                 {"letter_runs": 1.5}, {"signs": 0.2}, {"letters": 0.2, "signs": 0.2},
                                 {"letters": 0.5, "signs": 0.5, "letter_chars": "AB"},
                                 {"letters": 0.2, "signs": 0.2, "letter_chars": "AB", "sign_chars": "/7"}])
def test_train_reader_refuses_values_that_could_only_fail(bad):
    with pytest.raises(Exception, match="--"):
        ReaderTrainConfig(**bad)


@pytest.mark.parametrize("letters", [0.0, 0.3, "fonts", "signs"])
def test_train_reader_writes_a_reader_a_segmenter_loads(tmp_path, capsys, letters):
    out = tmp_path / "r"
    more = {"fonts": ["--letters", "0.3", "--letter-chars", "ATdx", "--letter-fonts", str(MPL_FONTS)],
            "signs": ["--letters", "0.3", "--signs", "0.2", "--letter-chars", "ATdx"]}.get(letters,
                                                                                           ["--letters", str(letters)])
    assert main(["train-reader", "--canvases", "60", "--epochs", "1", "--batch-size", "32", "--width", "4",
                 "--workers", "0", *more, "--out", str(out), "--quiet"]) in (0, None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_crops"] >= 32 and 0.0 <= metrics["held_accuracy"] <= 1.0
    args = json.loads((out / "args.json").read_text())
    assert args["canvases"] == 60 and args["augment"] == 1.0  # the defaults, recorded
    if letters == "fonts":  # the font files themselves are recorded, not the folder
        assert args["letter_chars"] == "ATdx" and str(MPL_FONTS / "DejaVuSans.ttf") in args["letter_fonts"]
    weights = tmp_path / "w"
    weights.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(DEFAULT_WEIGHTS / f, weights / f)
    shutil.copytree(out, weights / READER_DIR)
    seg = Segmenter(weights, InferenceConfig(backend="torch"))
    assert seg.reader is not None and seg.reader.config.width == 4
    assert seg.reader.config.classes == {0.0: 10, "signs": 12}.get(letters, 11)  # letters (signs): a class each
    if letters == "signs":  # a signs reader goes in WEIGHTS/signs
        assert args["sign_chars"] == "/()+#$%" and args["signs"] == 0.2
        shutil.copytree(out, weights / SIGNS_DIR)
        assert Segmenter(weights, InferenceConfig(backend="torch")).signs.model.config.classes == 12
    assert Segmenter(weights, InferenceConfig(backend="torch", reader=False)).reader is None


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_a_reader_weight_outside_0_to_1_is_refused(weight):
    with pytest.raises(ValueError, match="reader weight"):
        InferenceConfig(reader_weight=weight)


def test_a_net_passed_in_is_not_read_with_the_shipped_reader():
    seg = Segmenter(cfg=InferenceConfig(backend="torch"), model=load_pretrained(DEFAULT_WEIGHTS))
    assert seg.reader is None


def _one_digit(digit: int, second: tuple[int, float]):
    small = np.full((30, 20), BACKGROUND, np.uint8)
    small[5:25, 6:12] = digit
    image = np.where(small != BACKGROUND, 255, 0).astype(np.uint8)
    x = torch.full((NUM_CLASSES, 30, 20), -10.0)
    x[digit][torch.from_numpy(small == digit)] = 5.0
    x[second[0]][torch.from_numpy(small == digit)] = 5.0 + float(np.log(second[1] / (1 - second[1])))
    d = {"digit": digit, "confidence": 1 - second[1], "bbox": [6, 5, 12, 25]}
    return small, image, runner_up(x, small), d


def test_a_sure_reader_outvotes_a_hesitant_net_and_the_old_class_becomes_the_alternative():
    small, image, runner, d = _one_digit(9, (4, 0.45))  # the net: 9 at 0.55, 4 at 0.45
    reread([d], small, image, runner, Says(4))
    assert d["digit"] == 4 and d["_was"] == 9 and d["alternative"] == 9 and 0.5 < d["confidence"] <= 1.0
    assert d["alternative_confidence"] < d["confidence"]  # both from the mix, so the reading outranks the alternative


@pytest.mark.parametrize("weight, reader_sure", [(0.0, 1.0 - 1e-9), (0.3, 0.6)])
def test_the_net_keeps_its_reading_against_a_hesitant_or_unweighted_reader(weight, reader_sure):
    small, image, runner, d = _one_digit(9, (4, 0.1))  # the net: 9 at 0.9
    reread([d], small, image, runner, Says(4, reader_sure), weight=weight)
    assert d["digit"] == 9 and "_was" not in d


@pytest.mark.parametrize("split", [False, True])
def test_a_digit_the_net_is_sure_of_is_read_again_only_when_cut_from_a_taller_one(split):
    """The net's confidence is its class's over the pixels it coloured; a part cut from a blob two touching digits
    made (segapp.split: ``_split``) got the whole blob's class, so the reader reads it however sure the net was."""
    small, image, runner, d = _one_digit(9, (4, 0.01))  # the net: 9 at 0.99
    if split:
        d["_split"] = True
    reread([d], small, image, runner, Says(4), weight=1.0)  # a reader alone would say 4
    assert d["digit"] == (4 if split else 9) and ("_was" in d) == split


def test_a_digit_read_anew_is_recoloured_in_the_mask(monkeypatch):
    monkeypatch.setattr("segapp.reread.REREAD_BELOW", 1.01)  # the net is sure of this plain bar: ask the reader anyway
    canvas = np.zeros((64, 84), np.uint8)
    canvas[20:44, 38:42] = 255  # a plain 1 (a bar), read by a reader that insists on 7 and outweighs the net
    seg = Segmenter(None, InferenceConfig(backend="torch", reader_weight=1.0))
    seg.reader = Says(7)
    s = seg(canvas)
    assert s.text == "7"
    assert set(np.unique(s.classes)) == {7, BACKGROUND}
