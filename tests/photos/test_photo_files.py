"""Photo files a careless or hostile user hands over: 16-bit and float pixels, names that are not UTF-8, and
``file,label`` CSVs that point outside their own folder."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import cached_checkpoint
from PIL import Image, ImageDraw

from fmnist.commands.shims import evaluate_py as main
from fmnist.data.sources import FASHION_CLASSES
from fmnist.photos.inputs import PhotoError, decode_image, read_label_csv


@pytest.fixture
def checkpoint(synthetic_data_dir: str) -> Path:
    return cached_checkpoint(synthetic_data_dir)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _garment(levels: int, dtype: type) -> np.ndarray:
    """A dark garment on a light background, in ``levels`` grey levels (255: 8-bit, 65535: 16-bit)."""
    image = np.full((120, 90), round(0.85 * levels), dtype=dtype)
    image[20:100, 25:65] = round(0.2 * levels)
    image[20:40, 15:75] = round(0.3 * levels)
    return image


def test_a_16_bit_png_is_scaled_like_its_8_bit_twin() -> None:
    sixteen, eight = _garment(65535, np.uint16), _garment(255, np.uint8)
    assert Image.open(io.BytesIO(_png(sixteen))).mode.startswith("I;16")
    decoded = np.asarray(decode_image(_png(sixteen)))
    assert decoded.max() > 200  # PIL's own convert clips it instead (most values become 255, the input is flat)
    np.testing.assert_array_equal(decoded, np.asarray(decode_image(_png(eight))))


@pytest.mark.parametrize("values, readable", [((0.0, 1.0), True), ((0.0, 200.0), True), ((-5.0, 3.0e4), False)],
                         ids=["fractions", "grey-levels", "no-white-level"])
def test_float_pixels_are_scaled_or_refused(values: tuple[float, float], readable: bool) -> None:
    low, high = values
    array = np.full((40, 40), low, dtype=np.float32)
    array[10:30, 10:30] = high
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="TIFF")  # float32: mode F
    if readable:
        decoded = np.asarray(decode_image(buffer.getvalue()))
        assert decoded[20, 20, 0] == round(high * (255.0 if high <= 1.0 else 1.0)) and decoded[0, 0, 0] == 0
    else:
        with pytest.raises(PhotoError, match="pixels run from -5 to 30000, with no known white level"):
            decode_image(buffer.getvalue())


def _photo(path: Path) -> Path:
    image = Image.new("RGB", (200, 260), (230, 225, 215))
    ImageDraw.Draw(image).rectangle([50, 40, 150, 230], fill=(40, 45, 70))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def test_a_file_name_that_is_not_utf8_is_written_safely(checkpoint: Path, tmp_path: Path,
                                                        capfd: pytest.CaptureFixture) -> None:
    folder = tmp_path / "photos"
    _photo(folder / "ok.png")
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.png")  # Latin-1 bytes: not UTF-8
    Path(os.fsdecode(raw)).write_bytes((folder / "ok.png").read_bytes())
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(folder), "--out", str(out)]) == 0
    assert "Traceback" not in capfd.readouterr().err
    rows = (out / "predictions.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 3 and any("caf\\xe9.png" in row for row in rows)


def test_a_csv_reads_only_files_under_its_own_folder(checkpoint: Path, tmp_path: Path,
                                                     capfd: pytest.CaptureFixture) -> None:
    outside = _photo(tmp_path / "private" / "secret.png")
    inside = _photo(tmp_path / "set" / "a.png")
    (tmp_path / "set" / "link.png").symlink_to(outside)
    labels = tmp_path / "set" / "labels.csv"
    labels.write_text(f"file,label\na.png,Trouser\n../private/secret.png,Bag\n{outside},Bag\nlink.png,Bag\n")
    sources, problems = read_label_csv(labels, FASHION_CLASSES)
    assert [s.location for s in sources] == [str(inside)]
    assert [p.name for p in problems] == [f"{labels}:3", f"{labels}:4", f"{labels}:5"]
    assert all("lies outside the CSV's folder" in p.message and p.fatal for p in problems)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(labels), "--out", str(out)]) == 1  # some inputs refused
    assert "secret" not in (out / "predictions.csv").read_text() and len(list((out / "inputs").iterdir())) == 1
    assert "--allow-outside-csv" in capfd.readouterr().err
    sources, problems = read_label_csv(labels, FASHION_CLASSES, allow_outside=True)
    assert len(sources) == 4 and not problems
