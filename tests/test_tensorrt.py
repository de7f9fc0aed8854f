"""TensorRT engines on a CUDA machine; skipped where ``tensorrt`` does not import."""

from __future__ import annotations

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed")
torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-3), ("fp16", 2e-2)])
def test_tensorrt_reproduces_the_fixture_and_reuses_its_cache(
    model_file, parity_fixture, tmp_path, precision, tolerance
):
    from ciagan_core.engines.tensorrt_engine import TensorRTEngine

    engine = TensorRTEngine(model_file, precision=precision, max_batch=4, cache_dir=tmp_path)
    assert engine.status == "built"
    out = engine.run(parity_fixture["generator_input"], parity_fixture["identity"])
    assert np.abs(out - parity_fixture["raw_output"]).max() < tolerance
    again = TensorRTEngine(model_file, precision=precision, max_batch=4, cache_dir=tmp_path)
    assert again.status == "cached"
    big = np.repeat(parity_fixture["generator_input"], 3, axis=0)  # 9 faces > max_batch
    assert again.run(big, np.zeros(9, np.int64)).shape == (9, 3, 128, 128)


def test_a_corrupt_cached_engine_is_rebuilt(model_file, tmp_path):
    from ciagan_core.engines.tensorrt_engine import TensorRTEngine

    first = TensorRTEngine(model_file, max_batch=2, cache_dir=tmp_path)
    first.engine_path.write_bytes(b"garbage")
    second = TensorRTEngine(model_file, max_batch=2, cache_dir=tmp_path)
    assert second.status == "rebuilt"
