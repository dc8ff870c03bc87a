"""The local SageMaker stand-in's model server vs raw xgboost, on the same CSV bodies, in one run.

    python -m bench.model_server [--rows-per-body 100] [--bodies 200] [--repeats 7]

Bodies: feature rows of the synthetic stream (model/train.py build_dataset), written as invoke_model writes them
(pipeline/model_client.to_csv), chunks of invokeChunkSize rows. Measured, each as the median of --repeats passes
over all bodies, one thread:
  raw xgboost       per body: numpy's C CSV parser (np.loadtxt) + Booster.inplace_predict (the least work any
                    server must do for these bodies; nthread=1)
  stand-in          XGBoostContainer.invocations(body, "text/csv", "text/csv"): the stand-in's container (delimiter
                    check, parse, predict, text/csv answer), loaded from the artifact as the endpoint loads it
  stand-in runtime  SageMakerRuntime.invoke(...): + variant pick and fault check (no HTTP)
  PyTorch stand-in  PyTorchContainer.invocations on the PyTorch artifact (code/inference.py), for reference
Also the floor: inplace_predict on pre-parsed matrices (no CSV at all). Goal: stand-in >= 0.8x raw xgboost.
Passes are interleaved across the candidates (the machine is shared).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "functions")]


def _rates(functions: dict, inputs: dict, rows: int, repeats: int) -> dict[str, float]:
    """rows/s per function, median of ``repeats`` passes; the passes are interleaved (A, B, C, A, B, C, ...) so a
    change in the load of this shared machine affects every candidate alike."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, fn in functions.items():
            started = time.perf_counter()
            for item in inputs[name]:
                fn(item)
            times[name].append(time.perf_counter() - started)
    return {name: rows / statistics.median(t) for name, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-body", type=int, default=100)
    parser.add_argument("--bodies", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)

    import numpy as np

    from localcloud.sagemaker import PyTorchContainer, SageMakerRuntime, Variant, XGBoostContainer
    from model import train
    from pipeline.model_client import to_csv

    xgb_artifact = ROOT / "model" / "artifacts" / "model.tar.gz"
    torch_artifact = ROOT / "model" / "artifacts" / "pytorch" / "model.tar.gz"
    if not xgb_artifact.exists():
        print(f"{xgb_artifact} missing: run `make model` first")
        return 1
    x, _ = train.build_dataset(users=60, hours=12, seed=5)
    n = args.rows_per_body
    matrices = [x[i * n % (len(x) - n):][:n] for i in range(args.bodies)]
    bodies = [to_csv(m.tolist()) for m in matrices]
    rows = n * len(bodies)
    work = Path(tempfile.mkdtemp(prefix="bench-model-"))
    container = XGBoostContainer.from_model_tarball(xgb_artifact, work / "xgb")
    booster = container.booster

    def raw(body: bytes):
        matrix = np.loadtxt(body.decode().split("\n"), delimiter=",", dtype=float, ndmin=2, comments=None)
        return booster.inplace_predict(matrix, validate_features=False)

    def stand_in(body: bytes):
        return container.invocations(body, "text/csv", "text/csv")

    runtime = SageMakerRuntime(s3_get=lambda b, k: xgb_artifact.read_bytes(), work_dir=work, region="us-east-1",
                               account_id="123456789012")
    runtime.register_endpoint("bench", "bench-config", [Variant("primary", 1.0, "m", "sagemaker-xgboost:3.0-5",
                                                                "s3://bench/model.tar.gz")])

    def through_runtime(body: bytes):
        return runtime.invoke("bench", body, "text/csv", "text/csv")

    # the same scores (otherwise the comparison means nothing)
    for body in bodies[:5]:
        expected = raw(body)
        got = np.array([float(v) for v in stand_in(body)[0].split()])
        assert np.allclose(got, expected, atol=1e-7), "stand-in and raw xgboost disagree"
    functions = {"floor": lambda m: booster.inplace_predict(m, validate_features=False),
                 "raw xgboost (parse + inplace_predict)": raw,
                 "stand-in XGBoostContainer.invocations": stand_in,
                 "stand-in SageMakerRuntime.invoke": through_runtime}
    if torch_artifact.exists():
        torch_container = PyTorchContainer.from_model_tarball(torch_artifact, work / "torch")
        functions["PyTorch stand-in (code/inference.py)"] = \
            lambda b: torch_container.invocations(b, "text/csv", "text/csv")
    inputs = {name: (matrices if name == "floor" else bodies) for name in functions}
    results = _rates(functions, inputs, rows, args.repeats)
    floor = results.pop("floor")
    print(f"{len(bodies)} CSV bodies x {n} rows ({sum(map(len, bodies)) / len(bodies) / 1024:.1f} KiB each), "
          f"median of {args.repeats} passes, one thread")
    print(f"  {'xgboost inplace_predict on parsed matrices (floor)':52s} {floor:12,.0f} rows/s")
    for name, rate in results.items():
        print(f"  {name:52s} {rate:12,.0f} rows/s")
    base = results["raw xgboost (parse + inplace_predict)"]
    ratio = results["stand-in XGBoostContainer.invocations"] / base
    ratio_rt = results["stand-in SageMakerRuntime.invoke"] / base
    print(f"  ratio stand-in / raw xgboost: {ratio:.2f}x (runtime path {ratio_rt:.2f}x; goal >= 0.8x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
