"""OCR: Tesseract 5 on the rendered demo documents, against their exact text."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mpq_assets.datasets.registry import make_dataset
from mpq_assets.tasks import ocr
from mpq_assets.tasks.base import ModelNotAvailableError
from mpq_assets.tasks.ocr import TextRecognition
from mpq_assets.weights import MODEL_CACHE

# measured on the 18 clean pages with Tesseract 5.3.0: corpus CER 0.003, worst page 0.02
CLEAN_CER_BOUND = 0.03


@pytest.fixture(scope="module")
def pages():
    sources = list(make_dataset("demo_documents").items())[:6]
    return [s.item_id for s in sources], [s.load() for s in sources], [s.label for s in sources]


def test_clean_pages_read_almost_exactly_and_blur_hurts(pages) -> None:
    ids, images, texts = pages
    task = TextRecognition()
    preds = task.predict(images)
    rows = task.score_labels(ids, preds, texts)
    corpus = {r.metric: r.value for r in rows if r.item_id is None}
    assert corpus["cer"] < CLEAN_CER_BOUND and corpus["wer"] < 0.1
    assert all(r.value < CLEAN_CER_BOUND for r in rows if r.metric == "cer" and r.item_id)
    # the corpus rate is the reference-length-weighted mean of the items' rates
    assert task.aggregate("cer", [r for r in rows if r.item_id]) == pytest.approx(corpus["cer"])
    assert {r.value for r in task.score_reference(ids, preds, preds)} == {0.0}
    # a third of the resolution and back: letters smear, errors rise
    small = [np.asarray(Image.fromarray(im).resize((im.shape[1] // 3, im.shape[0] // 3), Image.BILINEAR)
                        .resize((im.shape[1], im.shape[0]), Image.BILINEAR)) for im in images]
    blurred = task.predict(small)
    damaged = {r.metric: r.value for r in task.score_reference(ids, blurred, preds) if r.item_id is None}
    assert damaged["cer_ref"] > 3 * max(corpus["cer"], 0.01)


@pytest.mark.fast
def test_text_comparison_keeps_case_and_punctuation() -> None:
    assert ocr.clean(" Hello,\n  World! ") == "Hello, World!"
    task = TextRecognition.__new__(TextRecognition)
    from mpq_assets.tasks.base import Prediction

    rows = TextRecognition.score_labels(task, ["a"], [Prediction(summary={"text": "hello, world"})],
                                        ["Hello, World!"])
    cer = [r.value for r in rows if r.metric == "cer" and r.item_id == "a"]
    assert cer == [pytest.approx(3 / 13)]  # H, W and "!" differ


@pytest.mark.fast
def test_missing_tesseract_names_the_apt_packages(monkeypatch) -> None:
    MODEL_CACHE.clear("tesseract")
    monkeypatch.setattr(ocr.shutil, "which", lambda name: None)
    try:
        with pytest.raises(ModelNotAvailableError, match="apt-get install tesseract-ocr tesseract-ocr-eng"):
            TextRecognition().predict([np.zeros((8, 8, 3), dtype=np.uint8)])
    finally:
        MODEL_CACHE.clear("tesseract")
    with pytest.raises(ValueError, match="images"):
        TextRecognition().predict(["not an image"])
