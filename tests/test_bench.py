"""The engine benchmark measures, relates to matmul throughput, and writes its report."""

from __future__ import annotations

import json

import pytest

from ciagan_core.bench import matmul_reference, run_benchmark, to_markdown
from ciagan_core.cli import main
from ciagan_core.models.generator import FLOPS_PER_FACE


def test_matmul_reference_measures_torch_and_a_clean_numpy():
    ref = matmul_reference("cpu", n=512, repeats=2)
    assert ref.torch_gflops > 1 and ref.numpy_gflops > 1
    assert ref.gflops == max(ref.torch_gflops, ref.numpy_gflops)


def test_benchmark_rows_relate_faces_per_second_to_the_reference(model_file):
    report = run_benchmark(
        model_file,
        [("torch", "fp32"), ("onnxruntime", "fp32")],
        [1, 2],
        "cpu",
        repeats=2,
        log=lambda *_: None,
    )
    assert [(r.engine, r.batch) for r in report.rows] == [
        ("torch", 1),
        ("torch", 2),
        ("onnxruntime", 1),
        ("onnxruntime", 2),
    ]
    for row in report.rows:
        assert row.faces_per_s > 0 and row.latency_ms_p95 >= row.latency_ms_median
        expected = row.faces_per_s * FLOPS_PER_FACE / 1e9 / report.reference["gflops"]
        assert row.share_of_matmul == pytest.approx(expected, rel=1e-2)
    table = to_markdown(report)
    assert "| onnxruntime | fp32 | 2 |" in table and "GFLOP/s" in table


def test_bench_command_writes_json_and_markdown(model_file, tmp_path, capsys, shared_dir):
    fixture = shared_dir / "fixtures" / "official_generator_parity.npz"
    code = main(
        [
            "bench",
            str(model_file),
            "--engines",
            "onnxruntime",
            "--batches",
            "1",
            "--repeats",
            "1",
            "--output",
            str(tmp_path),
            "--accuracy-fixture",
            str(fixture),
        ]
    )
    assert code == 0
    data = json.loads((tmp_path / "engines_cpu.json").read_text())
    assert data["rows"][0]["engine"] == "onnxruntime"
    assert data["accuracy"]["onnxruntime:fp32"] < 1e-4
    assert data["machine"]["cpu_count"] >= 1
    assert (tmp_path / "engines_cpu.md").read_text().startswith("# Engine benchmark (cpu)")
    assert "% of the matmul reference" in capsys.readouterr().out


def test_the_gpu_check_script_runs_its_whole_flow_on_cpu(tmp_path, shared_dir):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    fixture = shared_dir / "fixtures" / "official_generator_parity.npz"
    result = subprocess.run(
        [
            sys.executable,
            str(root / "scripts" / "gpu_check.py"),
            "--device",
            "cpu",
            "--batches",
            "1",
            "--repeats",
            "1",
            "--fixture",
            str(fixture),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OUT": str(tmp_path)},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "parity torch        fp32" in result.stdout
    parity = json.loads((tmp_path / "gpu_parity.json").read_text())
    assert parity["torch:fp32"] < 1e-4 and parity["onnxruntime:fp32"] < 1e-4
    assert 0 < parity["mean_abs_error"]["torch:fp32"] < parity["torch:fp32"]
    assert (tmp_path / "engines_cpu.md").is_file()
