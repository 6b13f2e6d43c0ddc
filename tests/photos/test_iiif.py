"""IIIF manifests and annotations (study B §6): parsing v2/v3 fixtures, writing predictions back, ``predict`` on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_photos import bag_photo, checkpoint, http_server, jpeg_bytes, save, trousers_photo  # noqa: F401 (fixtures)

from fmnist.commands.shims import evaluate_py as main
from fmnist.data.sources import FASHION_CLASSES
from fmnist.photos.iiif import manifest_sources, parse_annotations, read_manifest
from fmnist.photos.iiif_json import IIIFError
from fmnist.photos.iiif_text import PredictionRecord, parse_fields, prediction_annotations

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "iiif"


def test_presentation_2_manifest_with_referenced_and_embedded_lists() -> None:
    manifest = read_manifest(str(FIXTURES / "manifest_v2.json"))
    assert manifest.version == 2 and manifest.label == "Fashion photos (study B style)" and not manifest.problems
    canvases = {c.label: c for c in manifest.canvases}
    assert list(canvases) == ["shirt", "outfit", "bag"]
    shirt = canvases["shirt"]
    assert shirt.image == "https://example.org/iiif/shirt/full/full/0/default.jpg"
    # The list is referenced by URL and found as a same-named file next to the manifest (offline copy).
    [annotation] = shirt.annotations
    assert (annotation.true, annotation.predicted, annotation.confidence) == ("Shirt", "T-shirt/top", 0.6123)
    assert annotation.xywh == (0, 0, 240, 240)  # SAS's oa:Choice selector
    assert [a.true for a in canvases["outfit"].annotations] == ["Trouser", None]
    assert canvases["bag"].image == "https://example.org/iiif/bag/full/full/0/default.jpg"  # from the image service

    sources, problems = manifest_sources(manifest, FASHION_CLASSES)
    assert not problems
    assert [(s.name, s.label, s.region) for s in sources] == [
        ("shirt", 6, None),  # a box around the whole canvas is no crop
        ("outfit", 1, (0.25, 0.5, 0.5, 0.5)),  # xywh=100,300,200,300 on a 400x600 canvas
        ("bag", None, None),  # no True: annotation -> predicted, unlabelled
    ]


def test_presentation_3_manifest_with_textual_bodies_and_relative_page() -> None:
    manifest = read_manifest(str(FIXTURES / "manifest_v3.json"))
    assert manifest.version == 3 and manifest.label == "Fashion photos, Presentation 3" and not manifest.problems
    dress, sneaker = manifest.canvases
    assert dress.image == "https://example.org/iiif3/dress/full/max/0/default.jpg"
    assert (dress.annotations[0].true, dress.annotations[0].confidence) == ("Dress", 0.87)
    assert sneaker.image == "https://example.org/iiif3/sneaker/full/max/0/default.jpg"
    [annotation] = sneaker.annotations  # from page_sneaker.json, two TextualBody bodies
    assert (annotation.true, annotation.predicted, annotation.xywh) == ("Sneaker", "Sandal", (200, 200, 400, 400))
    sources, _ = manifest_sources(manifest, FASHION_CLASSES)
    assert [(s.label, s.region) for s in sources] == [(3, None), (7, (0.25, 0.25, 0.5, 0.5))]


@pytest.mark.parametrize(("html", "expected"), [
    ("<p>True: Shirt</p>", {"true": "Shirt"}),
    ("<p>True: T-shirt&#47;top</p><p>Predicted: Coat</p><p>Confidence: 0.93</p>",
     {"true": "T-shirt/top", "predicted": "Coat", "confidence": 0.93}),
    ("true: Bag<br/>PREDICTED: Sandal<br>confidence: 41%", {"true": "Bag", "predicted": "Sandal", "confidence": 0.41}),
    ("True: Ankle boot Predicted: Sneaker", {"true": "Ankle boot", "predicted": "Sneaker"}),
    ("<p>Confidence: high</p><p>nice photo</p>", {}),
])
def test_annotation_text_fields(html: str, expected: dict) -> None:
    assert parse_fields(html) == expected


def test_missing_list_is_one_problem_and_the_rest_still_loads(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "manifest_v2.json").read_text())
    data["sequences"][0]["canvases"][0]["otherContent"][0]["@id"] = "missing_list.json"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    manifest = read_manifest(str(tmp_path / "manifest.json"))
    assert len(manifest.problems) == 1 and "no such file" in manifest.problems[0].message
    assert [c.label for c in manifest.canvases] == ["shirt", "outfit", "bag"]


def test_extra_annotation_lists_attach_by_canvas(tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "manifest_v2.json").read_text())
    del data["sequences"][0]["canvases"][0]["otherContent"]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    stray = prediction_annotations([PredictionRecord("https://example.org/elsewhere", "Bag", 0.5)])
    (tmp_path / "stray.json").write_text(json.dumps(stray))
    manifest = read_manifest(str(tmp_path / "manifest.json"), [str(FIXTURES / "list_shirt.json"),
                                                               str(tmp_path / "stray.json")])
    assert manifest.canvases[0].annotations[0].true == "Shirt"
    assert len(manifest.problems) == 1 and "unknown canvas" in manifest.problems[0].message


def test_not_a_manifest_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IIIFError, match="needs its manifest"):
        read_manifest(str(FIXTURES / "list_shirt.json"))
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(IIIFError, match="not valid JSON"):
        read_manifest(str(tmp_path / "broken.json"))


@pytest.mark.parametrize("version", [2, 3])
def test_predictions_written_back_parse_again(version: int, tmp_path: Path) -> None:
    records = [PredictionRecord("https://example.org/c/1", "Coat", 0.81234, true="Shirt", model="deep"),
               PredictionRecord("https://example.org/c/2", "Trouser", 0.99, xywh=(10, 20, 30, 40))]
    document = prediction_annotations(records, version)
    assert document["@type" if version == 2 else "type"] == ("sc:AnnotationList" if version == 2 else "AnnotationPage")
    body = document["resources"][0]["resource"][0] if version == 2 else document["items"][0]["body"]
    assert body["@type" if version == 2 else "type"] == ("cnt:ContentAsText" if version == 2 else "TextualBody")
    parsed = parse_annotations(json.loads(json.dumps(document)))
    assert [(a.canvas, a.xywh, a.fields) for a in parsed] == [
        ("https://example.org/c/1", None, {"true": "Shirt", "predicted": "Coat", "confidence": 0.8123}),
        ("https://example.org/c/2", (10, 20, 30, 40), {"predicted": "Trouser", "confidence": 0.99}),
    ]


def _local_manifest(folder: Path) -> Path:
    """The v2 fixture with its images as local files next to it (relative ids) and its list copied alongside."""
    save(trousers_photo(size=(240, 240)), folder / "images" / "shirt.jpg")
    outfit = trousers_photo(size=(400, 600), box=(0.3, 0.55, 0.7, 0.95))
    save(outfit, folder / "images" / "outfit.jpg")
    save(bag_photo(), folder / "images" / "bag.png")
    data = json.loads((FIXTURES / "manifest_v2.json").read_text())
    canvases = data["sequences"][0]["canvases"]
    canvases[0]["images"][0]["resource"]["@id"] = "images/shirt.jpg"
    canvases[1]["images"][0]["resource"]["@id"] = "images/outfit.jpg"
    canvases[2]["images"][0]["resource"] = {"@id": "images/bag.png", "@type": "dctypes:Image"}
    shutil.copy(FIXTURES / "list_shirt.json", folder / "list_shirt.json")
    path = folder / "manifest.json"
    path.write_text(json.dumps(data))
    return path


def test_predict_on_a_local_manifest_scores_and_writes_annotations(checkpoint: Path, tmp_path: Path,  # noqa: F811
                                                                   capsys: pytest.CaptureFixture) -> None:
    manifest = _local_manifest(tmp_path / "iiif")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(manifest), "--write-annotations", "--out", str(out)]) == 0
    assert "accuracy" in capsys.readouterr().out
    assert json.loads((out / "metrics.json").read_text())["n"] == 2  # shirt + the trousers region
    [written] = list((out / "iiif").glob("*.json"))
    parsed = parse_annotations(json.loads(written.read_text()))
    assert [(a.canvas.rsplit("/", 1)[-1], a.true, a.xywh) for a in parsed] == [
        ("shirt", "Shirt", (0, 0, 240, 240)), ("outfit", "Trouser", (100, 300, 200, 300)), ("bag", None, None)]
    assert all(a.predicted in FASHION_CLASSES and 0 < a.confidence <= 1 for a in parsed)


def test_predict_on_a_manifest_url(checkpoint: Path, http_server: tuple[str, dict], tmp_path: Path) -> None:  # noqa: F811
    base, files = http_server
    data = json.loads((FIXTURES / "manifest_v3.json").read_text())
    data["items"][0]["items"][0]["items"][0]["body"]["id"] = f"{base}/files/dress.jpg"
    data["items"][1]["items"][0]["items"][0]["body"]["service"][0]["id"] = f"{base}/files/sneaker"
    files["manifest.json"] = (json.dumps(data).encode(), "application/ld+json")
    files["page_sneaker.json"] = ((FIXTURES / "page_sneaker.json").read_bytes(), "application/json")
    files["dress.jpg"] = (jpeg_bytes(trousers_photo()), "image/jpeg")
    files["sneaker/full/max/0/default.jpg"] = (jpeg_bytes(bag_photo()), "image/jpeg")
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), f"{base}/files/manifest.json", "--write-annotations", "--allow-private-hosts",
            "--out", str(out)]
    assert main(argv) == 0
    assert json.loads((out / "metrics.json").read_text())["n"] == 2
    [written] = list((out / "iiif").glob("*.json"))
    assert json.loads(written.read_text())["type"] == "AnnotationPage"  # written back in the manifest's version
