"""Engine benchmark: faces/s and latency per engine and batch, as a share of matmul throughput.

The reference is a large fp32 matrix product measured in the same run on the same device: the
faster of torch's and numpy's (numpy in a child process without the OPENBLAS_CORETYPE /
OPENBLAS_L2_SIZE overrides some machines set, so it runs the processor's own kernel). The
generator's share is faces/s x 3.28 GFLOP / matmul FLOP/s. Each engine is measured alone, in
its throughput configuration (ONNX Runtime's worker threads spin between calls; the pipeline
turns that off because it shares the cores with detection).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ciagan_core.models.generator import FLOPS_PER_FACE

_NUMPY_MATMUL = r"""
import json, statistics, time
import numpy as np
n = {n}
a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
a @ b
times = []
for _ in range({repeats}):
    t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)
kernel = ""
try:
    from threadpoolctl import threadpool_info
    kernel = ",".join(f"{{i.get('internal_api')}}:{{i.get('architecture')}}"
                      for i in threadpool_info())
except ImportError:
    pass
print(json.dumps({{"gflops": 2 * n ** 3 / statistics.median(times) / 1e9, "kernel": kernel}}))
"""


@dataclass
class Reference:
    """Matmul throughput measured in this run."""

    torch_gflops: float
    numpy_gflops: float = 0.0
    numpy_kernel: str = ""

    @property
    def gflops(self) -> float:
        return max(self.torch_gflops, self.numpy_gflops)


@dataclass
class Row:
    engine: str
    precision: str
    batch: int
    faces_per_s: float
    latency_ms_median: float
    latency_ms_p95: float
    share_of_matmul: float


@dataclass
class Report:
    machine: dict
    reference: dict
    rows: list[Row] = field(default_factory=list)
    accuracy: dict = field(default_factory=dict)


def machine_description(device: str) -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        index = int(device.partition(":")[2] or 0)
        info["gpu"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
    return info


def matmul_reference(device: str, n: int = 4096, repeats: int = 5) -> Reference:
    import torch

    dev = torch.device(device)
    a, b = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # an fp32 reference, not TF32
    times = []
    for i in range(repeats + 1):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        a @ b
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    ref = Reference(torch_gflops=2 * n**3 / statistics.median(times) / 1e9)
    if dev.type == "cpu":
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
        }
        result = subprocess.run(
            [sys.executable, "-c", _NUMPY_MATMUL.format(n=n, repeats=repeats)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        if result.returncode == 0:
            data = json.loads(result.stdout.strip().splitlines()[-1])
            ref.numpy_gflops, ref.numpy_kernel = data["gflops"], data["kernel"]
    return ref


def time_engine(engine, batch: int, repeats: int, seed: int = 0) -> tuple[float, float]:
    """(median, p95) milliseconds of one ``engine.run`` on ``batch`` faces."""
    rng = np.random.default_rng(seed)
    inputs = rng.random((batch, 6, 128, 128), dtype=np.float32)
    ids = rng.integers(0, engine.num_identities, batch)
    engine.run(inputs, ids)  # warm-up (allocations, kernel selection)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.run(inputs, ids)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times), float(np.percentile(times, 95))


def run_benchmark(
    model_path: Path,
    engines: list[tuple[str, str]],
    batches: list[int],
    device: str,
    repeats: int,
    log=print,
) -> Report:
    from ciagan_core.engines import create_engine

    reference = matmul_reference(device)
    log(
        f"matmul reference: {reference.gflops:.1f} GFLOP/s (torch {reference.torch_gflops:.1f}, "
        f"numpy {reference.numpy_gflops:.1f} {reference.numpy_kernel})"
    )
    report = Report(machine_description(device), asdict(reference) | {"gflops": reference.gflops})
    for name, precision in engines:
        # An engine measured alone runs back-to-back calls: let ONNX Runtime's threads spin.
        options = {"spin": True} if name == "onnxruntime" else {}
        engine = create_engine(
            name, model_path, device=device, precision=precision, max_batch=max(batches), **options
        )
        for batch in batches:
            median, p95 = time_engine(engine, batch, repeats)
            faces = batch / (median / 1e3)
            row = Row(
                name,
                precision,
                batch,
                round(faces, 2),
                round(median, 2),
                round(p95, 2),
                round(faces * FLOPS_PER_FACE / 1e9 / reference.gflops, 4),
            )
            report.rows.append(row)
            log(
                f"{name:12} {precision} batch {batch:3}: {faces:8.1f} faces/s, median "
                f"{median:8.2f} ms, p95 {p95:8.2f} ms, {100 * row.share_of_matmul:5.1f}% of matmul"
            )
        del engine
    return report


def to_markdown(report: Report) -> str:
    m, ref = report.machine, report.reference
    where = m.get("gpu", m["cpu"])
    lines = [
        f"# Engine benchmark ({m['device']})",
        "",
        f"Machine: {where}; {m['cpu_count']} CPUs; {m['platform']}; torch {m['torch']} "
        f"({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}.",
        f"Matmul reference (fp32, same run): {ref['gflops']:.1f} GFLOP/s "
        f"(torch {ref['torch_gflops']:.1f}, numpy {ref['numpy_gflops']:.1f} "
        f"{ref['numpy_kernel']}). The generator costs {FLOPS_PER_FACE / 1e9:.2f} GFLOP per face.",
        "",
        "| engine | precision | batch | faces/s | latency median (ms) | p95 (ms) "
        "| share of matmul |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.engine} | {r.precision} | {r.batch} | {r.faces_per_s:.1f} | "
            f"{r.latency_ms_median:.2f} | {r.latency_ms_p95:.2f} | "
            f"{100 * r.share_of_matmul:.1f}% |"
        )
    if report.accuracy:
        lines += ["", "Accuracy on the parity fixture (max abs error of the raw output):", ""]
        lines += [f"- {k}: {v:.2e}" for k, v in report.accuracy.items()]
    lines.append("")
    return "\n".join(lines)


def report_paths(directory: Path, stem: str) -> tuple[Path, Path]:
    """Where ``write_report`` writes: ``<stem>.json`` and ``<stem>.md`` in ``directory``."""
    return directory / f"{stem}.json", directory / f"{stem}.md"


def write_report(report: Report, directory: Path, stem: str) -> tuple[Path, Path]:
    """The report as JSON and Markdown, each written atomically."""
    from ciagan_core.atomic_write import write_bytes_atomic

    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = report_paths(directory, stem)
    write_bytes_atomic(json_path, (json.dumps(asdict(report), indent=2) + "\n").encode())
    write_bytes_atomic(md_path, to_markdown(report).encode())
    return json_path, md_path
