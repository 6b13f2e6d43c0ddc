"""Real-world photos: preprocessing, validation of untrusted input, URL fetching, and ``evaluate.py predict``.

Photos are drawn with PIL in temporary folders; URLs are served by a local ``http.server`` on
127.0.0.1 (slow, trickling, oversized and redirecting endpoints included). No network.
"""

from __future__ import annotations

import csv
import io
import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import cached_checkpoint
from PIL import Image, ImageDraw

from fmnist.commands.shims import evaluate_py as main
from fmnist.data.sources import FASHION_CLASSES
from fmnist.photos.inputs import PhotoError, decode_image, expand_inputs, fetch_url, match_label, read_bytes
from fmnist.photos.preprocess import preprocess_ours, preprocess_plain

# -- synthetic photos -----------------------------------------------------------------------------------------


def trousers_photo(size: tuple[int, int] = (300, 400), background: tuple[int, ...] = (225, 215, 200),
                   garment: tuple[int, ...] = (40, 45, 70), box: tuple[float, ...] = (0.15, 0.2, 0.45, 0.9),
                   mode: str = "RGB") -> Image.Image:
    """A flat-lay "photo" of trousers (waistband + two legs), off-centre, on a plain background."""
    image = Image.new(mode, size, background)
    draw = ImageDraw.Draw(image)
    width, height = size
    x0, y0, x1, y1 = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    gap = (x1 - x0) * 0.08
    mid = (x0 + x1) / 2
    draw.rectangle([x0, y0, x1, y0 + (y1 - y0) * 0.2], fill=garment)
    draw.polygon([(x0, y0), (mid - gap, y0), (mid - gap, y1), (x0 - 0.03 * width, y1)], fill=garment)
    draw.polygon([(mid + gap, y0), (x1, y0), (x1 + 0.03 * width, y1), (mid + gap, y1)], fill=garment)
    return image


def bag_photo(background: tuple[int, int, int] = (230, 230, 225)) -> Image.Image:
    image = Image.new("RGB", (320, 320), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle([70, 120, 250, 270], fill=(90, 40, 30))
    draw.arc([110, 50, 210, 170], 180, 360, fill=(90, 40, 30), width=12)
    return image


def save(image: Image.Image, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG *header* declaring ``width x height`` with almost no data: a decompression-bomb stand-in."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# -- preprocessing --------------------------------------------------------------------------------------------


def test_plain_is_study_b_verbatim() -> None:
    photo = trousers_photo()
    expected = np.asarray(photo.convert("L").point(lambda x: 255 - x).resize((28, 28), Image.LANCZOS))
    got = preprocess_plain(photo)
    assert got.shape == (28, 28) and got.dtype == np.uint8
    assert np.array_equal(got, expected)
    assert got[0, 0] > 20  # the inverted beige floor stays grey: what hurt study B


def test_ours_inverts_light_background_crops_pads_and_fills_the_frame() -> None:
    result = preprocess_ours(trousers_photo())
    pixels = result.pixels
    assert result.inverted and pixels.shape == (28, 28) and pixels.dtype == np.uint8
    lit = pixels > 60
    rows, cols = np.nonzero(lit)
    assert rows.max() - rows.min() >= 25  # longest edge fills the frame, as in Fashion-MNIST
    assert abs(cols.mean() - 13.5) < 2.5  # off-centre garment is centred by the crop
    assert pixels[:, :3].max() < 10 and pixels[:, -3:].max() < 10  # padding and background are black
    assert np.percentile(pixels[lit], 90) > 200  # garment bright


def test_ours_keeps_dark_backgrounds_and_bright_garments() -> None:
    photo = trousers_photo(background=(25, 25, 30), garment=(215, 210, 205))
    result = preprocess_ours(photo)
    assert not result.inverted
    assert result.pixels.max() > 200 and result.pixels[0, 0] < 10


def test_ours_white_garment_on_light_bed_stays_visible() -> None:
    photo = trousers_photo(background=(200, 185, 165), garment=(252, 252, 252))
    result = preprocess_ours(photo)
    assert result.inverted
    assert (result.pixels > 128).sum() > 60  # plain inversion would make it (nearly) black


def test_transparent_background_counts_as_white(tmp_path: Path) -> None:
    photo = trousers_photo(background=(0, 0, 0, 0), garment=(40, 40, 40, 255), mode="RGBA")
    image = decode_image(save(photo, tmp_path / "cutout.png").read_bytes())
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)
    assert preprocess_ours(image).inverted


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    photo = Image.new("RGB", (60, 30), "white")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    image = decode_image(save(photo, tmp_path / "rotated.jpg", exif=exif).read_bytes())
    assert image.size == (30, 60)


@pytest.mark.parametrize(("text", "expected"), [
    ("Shirt", 6), ("t-shirt_top", 0), ("T-shirt/top", 0), ("pants", 1), ("Trousers", 1), ("outwear", 4),
    ("ankle boot", 9), ("sneakers", 7), ("3", 3), ("Hat", None), ("", None),
])
def test_label_names_map_onto_classes(text: str, expected: int | None) -> None:
    assert match_label(text, FASHION_CLASSES) == expected


# -- bad input: one clear reason each ---------------------------------------------------------------------


@pytest.mark.parametrize(("make", "kwargs", "message"), [
    (lambda: b"this is a text file, not a photo\n", {}, "not an image"),
    (lambda: jpeg_bytes(trousers_photo())[:2000], {}, "truncated image data"),
    (lambda: b"", {}, "empty file"),
    (lambda: png_header_only(60_000, 60_000), {}, "decompression bomb"),
    (lambda: png_header_only(10_000, 10_000), {}, "decompression bomb"),  # PIL's warning, made an error
    (lambda: jpeg_bytes(trousers_photo()), {"max_pixels": 10_000}, "over the 10,000-pixel limit"),
])
def test_bad_images_raise_one_line_photo_errors(make, kwargs: dict, message: str) -> None:
    with pytest.raises(PhotoError, match=message) as info:
        decode_image(make(), **kwargs)
    assert "\n" not in str(info.value)


def test_file_reading_errors(tmp_path: Path) -> None:
    with pytest.raises(PhotoError, match="no such file"):
        read_bytes(tmp_path / "missing.jpg")
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\0" * 5000)
    with pytest.raises(PhotoError, match="size cap"):
        read_bytes(big, max_bytes=1000)


# -- inputs: folders, CSVs, URLs --------------------------------------------------------------------------


def test_expand_inputs_recognises_labelled_layouts(tmp_path: Path) -> None:
    save(trousers_photo(), tmp_path / "set" / "trouser" / "a.jpg")
    save(bag_photo(), tmp_path / "set" / "bags" / "b.png")
    save(bag_photo(), tmp_path / "set" / "misc" / "c.png")
    sources, problems = expand_inputs([str(tmp_path / "set"), str(tmp_path / "nope"), "ftp://x.org/a.jpg",
                                       "https://example.org/a.jpg"], FASHION_CLASSES)
    labels = {s.name: s.label for s in sources}
    assert labels == {"bags/b.png": 8, "misc/c.png": None, "trouser/a.jpg": 1, "a.jpg": None}
    assert [(p.name, p.fatal) for p in problems] == [(str(tmp_path / "nope"), True), ("ftp://x.org/a.jpg", True)]
    assert "only http(s)" in problems[1].message

    (tmp_path / "set" / "labels.csv").write_text("file,label\ntrouser/a.jpg,Trouser\nbags/b.png,Handbag\n"
                                                 "misc/c.png,Hat\n")
    sources, problems = expand_inputs([str(tmp_path / "set")], FASHION_CLASSES)  # labels.csv wins
    assert [(s.name, s.label) for s in sources] == [("trouser/a.jpg", 1), ("bags/b.png", 8), ("misc/c.png", None)]
    assert len(problems) == 1 and not problems[0].fatal and "'Hat'" in problems[0].message


class _Handler(BaseHTTPRequestHandler):
    """Endpoints for the fetch tests; every loop is bounded so the server always stops."""

    files: dict[str, tuple[bytes, str]] = {}
    stopping = threading.Event()

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"", content_type: str = "text/plain", length: int | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (its deadline): expected, and not worth a server traceback

    def _stream(self, chunk: bytes, count: int, pause: float = 0.0) -> None:
        try:
            for _ in range(count):
                if self.stopping.is_set():
                    return
                self.wfile.write(chunk)
                self.wfile.flush()
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            return

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        path = self.path.split("?", 1)[0]
        if path.startswith("/files/") and path[len("/files/"):] in self.files:
            body, kind = self.files[path[len("/files/"):]]
            self._send(200, body, kind)
        elif path == "/slow":  # answers after 2 s: later than the client's timeout
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not self.stopping.is_set():
                time.sleep(0.02)
            self._send(200, b"late")
        elif path == "/trickle":  # one byte per 0.1 s: every read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "40")
            self.end_headers()
            self._stream(b"x", 40, pause=0.1)
        elif path == "/big":  # announces 50 MiB
            self.send_response(200)
            self.send_header("Content-Length", str(50 * 2**20))
            self.end_headers()
            self._stream(b"\0" * 65536, 8)
        elif path == "/big-unsized":  # no Content-Length, body until the connection closes
            self.send_response(200)
            self.end_headers()
            self._stream(b"\0" * 65536, 32)
        elif path == "/to-ftp":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/photo.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"not found")


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, dict]]:
    """``(base_url, files)``: a local server on 127.0.0.1; put ``name -> (bytes, content type)`` into ``files``."""
    with pytest.MonkeyPatch.context() as mp:
        for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            mp.delenv(var, raising=False)
        mp.setenv("no_proxy", "127.0.0.1,localhost")
        _Handler.files = {}
        _Handler.stopping.clear()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}", _Handler.files
        finally:
            _Handler.stopping.set()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


def test_fetch_url_ok_and_every_failure_is_one_line(http_server: tuple[str, dict]) -> None:
    base, files = http_server
    files["bag.jpg"] = (jpeg_bytes(bag_photo()), "image/jpeg")
    assert decode_image(fetch_url(f"{base}/files/bag.jpg", allow_private=True)).size == (320, 320)
    cases = [
        (f"{base}/slow", {"timeout": 0.3}, "timed out"),
        (f"{base}/trickle", {"timeout": 0.5}, "timed out"),
        (f"{base}/big", {"max_bytes": 2**20}, "over the 1.0 MiB size cap"),
        (f"{base}/big-unsized", {"max_bytes": 100_000}, "exceeds the 98 KiB size cap"),
        (f"{base}/missing.jpg", {}, "HTTP error 404"),
        (f"{base}/to-ftp", {}, "redirected to a non-http(s) URL"),
        (f"{base}/files/bag.jpg", {"allow_private": False}, "refused to fetch .*127.0.0.1 is a loopback address"),
        ("ftp://127.0.0.1/photo.jpg", {}, "only http(s)"),
        ("file:///etc/passwd", {}, "only http(s)"),
    ]
    # /trickle sends its 40 bytes over 4 s, each byte well within the 0.5 s timeout: without the client's one deadline
    # over the whole download it would succeed, so its "timed out" is the proof (no clock needed)
    for url, kwargs, message in cases:
        with pytest.raises(PhotoError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
            fetch_url(url, **{"allow_private": True, **kwargs})
        assert "\n" not in str(info.value)


# -- the command line ---------------------------------------------------------------------------------------


@pytest.fixture
def checkpoint(synthetic_data_dir: str) -> Path:
    return cached_checkpoint(synthetic_data_dir)


def test_predict_batch_survives_bad_inputs(checkpoint: Path, tmp_path: Path, http_server: tuple[str, dict],
                                           capsys: pytest.CaptureFixture) -> None:
    base, files = http_server
    files["web-bag.png"] = (save(bag_photo(), tmp_path / "web.png").read_bytes(), "image/png")
    good = save(trousers_photo(), tmp_path / "in" / "trousers.jpg")
    (tmp_path / "in" / "notes.jpg").write_text("not an image")
    (tmp_path / "in" / "cut.jpg").write_bytes(jpeg_bytes(bag_photo())[:1500])
    (tmp_path / "in" / "bomb.png").write_bytes(png_header_only(60_000, 60_000))
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(good), str(tmp_path / "in" / "notes.jpg"), str(tmp_path / "in" / "cut.jpg"),
            str(tmp_path / "in" / "bomb.png"), str(tmp_path / "in" / "missing.jpg"), "ftp://127.0.0.1/x.jpg",
            f"{base}/slow", f"{base}/big", f"{base}/files/web-bag.png", "--timeout", "0.3", "--max-bytes", "1000000",
            "--allow-private-hosts", "--out", str(out)]
    assert main(argv) == 1  # some inputs failed, the rest ran
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if line.strip()]
    assert len(errors) == 8  # 7 bad inputs, one line each, plus the closing count
    for name, reason in [("notes.jpg", "not an image"), ("cut.jpg", "truncated"), ("bomb.png", "decompression bomb"),
                         ("missing.jpg", "no such file"), ("ftp://127.0.0.1/x.jpg", "only http(s)"),
                         ("slow", "timed out"), ("big", "size cap")]:
        assert sum(line.startswith(name) and reason in line for line in errors) == 1, (name, errors)
    assert "Traceback" not in captured.err
    assert "trousers.jpg" in captured.out and "web-bag.png" in captured.out
    saved = sorted((out / "inputs").glob("*.png"))
    assert [p.name for p in saved] == ["001_trousers.png", "002_web-bag.png"]
    assert all(Image.open(p).size == (28, 28) for p in saved)  # what the model saw
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("file,input_png,label,top1,p1,top2,p2,top3,p3") and len(rows) == 3


def test_predict_labelled_folder_scores_and_reports(checkpoint: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    for i in range(2):
        save(trousers_photo(box=(0.2 + 0.1 * i, 0.15, 0.5 + 0.1 * i, 0.9)), tmp_path / "set" / "pants" / f"p{i}.jpg")
        save(bag_photo((230 - 20 * i, 230, 225)), tmp_path / "set" / "bag" / f"b{i}.png")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(tmp_path / "set"), "--out", str(out), "--gradcam"]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    # the score again from predictions.csv, one row per photo: its label (from the folder) against its top-1 class
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert sorted(r["label"] for r in rows) == ["Bag", "Bag", "Trouser", "Trouser"]
    right = sum(r["label"] == r["top1"] for r in rows)
    assert summary["n"] == 4 and summary["accuracy"] == right / 4
    names = summary["class_names"]
    confusion = np.zeros((10, 10), dtype=int)
    for r in rows:
        confusion[names.index(r["label"]), names.index(r["top1"])] += 1
    np.testing.assert_array_equal(np.array(summary["confusion_matrix"]), confusion)
    assert f"accuracy {right / 4:.1%} ({right}/4 labelled photos" in capsys.readouterr().out
    report = json.loads((out / "report" / "metrics.json").read_text())  # the evaluation report of the same photos
    assert summary["report"] == str(out / "report") and report["n"] == 4 and report["accuracy"] == right / 4
    assert len(list((out / "gradcam").glob("*.png"))) == 5  # one per photo + the grid


def test_predict_csv_with_plain_preprocessing(checkpoint: Path, tmp_path: Path) -> None:
    save(trousers_photo(), tmp_path / "photos" / "one.jpg")
    save(bag_photo(), tmp_path / "photos" / "two.png")
    labels = tmp_path / "photos" / "labels.csv"
    labels.write_text("file,label\none.jpg,Trouser\ntwo.png,Bag\n")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(labels), "--preprocess", "plain", "--out", str(out)]) == 0
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["n"] == 2 and summary["preprocess"] == "plain"


def test_predict_with_nothing_usable_is_an_error(checkpoint: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "a.png").write_text("nope")
    assert main(["predict", str(checkpoint), str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "a.png: not an image" in err and "error: none of the inputs" in err


def test_predict_ensemble_averages_the_members_probabilities(checkpoint: Path, synthetic_data_dir: str,
                                                             tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Issue 19's small ensemble: `--ensemble RUN` averages class probabilities; each member alone gives its own."""
    other = cached_checkpoint(synthetic_data_dir, "lenet5")
    save(trousers_photo(), tmp_path / "set" / "pants" / "p.jpg")
    save(bag_photo(), tmp_path / "set" / "bag" / "b.png")
    probs = {}
    for name, argv in (("cnn", [str(checkpoint)]), ("lenet5", [str(other)]),
                       ("both", [str(checkpoint), str(tmp_path / "set"), "--ensemble", str(other)])):
        args = argv if name == "both" else [*argv, str(tmp_path / "set")]
        assert main(["predict", *args, "--out", str(tmp_path / name)]) == 0
        rows = (tmp_path / name / "predictions.csv").read_text().splitlines()[1:]
        probs[name] = {r.split(",")[0]: dict(zip(r.split(",")[3::2], map(float, r.split(",")[4::2]), strict=True))
                       for r in rows}
    for photo, top in probs["both"].items():
        for cls, p in top.items():
            single = [probs[m][photo].get(cls) for m in ("cnn", "lenet5")]
            if None not in single:  # the class is in each member's top 3 too
                assert p == pytest.approx(sum(single) / 2, abs=2e-4)
    summary = json.loads((tmp_path / "both" / "metrics.json").read_text())
    assert summary["model"] == "cnn-ensemble2" and summary["checkpoints"] == [str(checkpoint), str(other)]
    assert main(["predict", str(checkpoint), str(tmp_path / "set"), "--ensemble", str(checkpoint)]) == 2
    assert "--ensemble lists a run twice" in capsys.readouterr().err
