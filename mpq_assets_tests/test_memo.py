"""The content-keyed memo: identical reconstructions are predicted and scored once."""

from __future__ import annotations

from pathlib import Path

import pytest

from mpq_assets.pipeline.memo import Memo, file_digest

pytestmark = pytest.mark.fast  # the `make check` tier


def test_memo_is_a_bounded_lru() -> None:
    memo = Memo(max_entries=2)
    memo.put("a", 1)
    memo.put("b", 2)
    assert memo.get("a") == 1  # a is now most recent
    memo.put("c", 3)  # evicts b
    assert memo.get("b") is None and memo.get("c") == 3 and memo.get("a") == 1
    assert memo.hits == 3


def test_memo_is_bounded_by_the_bytes_of_its_arrays() -> None:
    import numpy as np

    from mpq_assets.tasks.base import Prediction

    memo = Memo(max_entries=100, max_bytes=3 * 1024 + 3 * 256)
    for k in range(5):
        memo.put(k, Prediction({}, np.zeros(1024, np.uint8)))
    assert [memo.get(k) is not None for k in range(5)] == [False, False, True, True, True]


def test_file_digest_follows_content(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"same")
    b.write_bytes(b"same")
    assert file_digest(a) == file_digest(b)
    b.write_bytes(b"different bytes")
    assert file_digest(a) != file_digest(b)
