"""GPU validation kit: one run that proves a lent GPU machine and measures the engine on it.

    python -m benchmarks.gpu_session [--dry] [--out DIR] [--budget SECONDS] [--only A,B]

Sections, in order, each given what is left of ``--budget`` (default 540 s, to fit one
10-minute call with the wheel install in front):
- ``environment``: GPU, driver, CUDA, library versions, XGBoost's CUDA build flag, free
  memory, and the device-to-device copy bandwidth measured with CuPy;
- ``global_month``: every land cell of the 0.05 deg grid (3 % missing values) through the
  merged 10 x 20 ensemble, mean + std and with SHAP, rows.trees/s, memory high-water mark
  (``benchmarks.global_month``);
- ``envelope_global``: SG upper envelope + SCVTG of one year of daily NIRv for every land
  cell, in chunks sized from free memory, in float64 (default) and float32, GB/s of input
  read, and the numba CPU kernels on a sample of the same pixels for the ratio;
- ``pytest_gpu``: ``pytest -m gpu`` on the card, pass/fail/skip counts and the output's tail;
- ``training``: the 10 x 20 ensemble on 20,000 site-months, CPU workers vs the GPU
  (``train.gpu_workers`` threads sharing the card), with the test MAE of each;
- ``parity``: every kernel and the ensemble (mean, std, SHAP) on the CPU and the GPU, max
  differences, and the merged ensemble against its members' mean on the GPU.
The results JSON (``gpu-session-<gpu>-<date>.json``) is rewritten after every section, so a
timeout loses only the section in flight. ``--dry`` runs every section on the CPU in place of
the GPU with tiny sizes (``pytest --collect-only``): what CI runs to keep the kit working.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from benchmarks import global_month
from benchmarks.common import RESULTS, environment, global_land_cells, smoke_rounds, write_result
from benchmarks.kernels import cloudy_daily
from benchmarks.training import synthetic_table
from ciml_ter import kernels
from ciml_ter.config import PipelineConfig
from ciml_ter.device import CPU, Device

SECTIONS = ("environment", "global_month", "envelope_global", "pytest_gpu", "training", "parity")
ROOT = Path(__file__).resolve().parents[1]


class Session:
    """Sizes, device, deadline and the results document of one run."""

    def __init__(self, dry: bool, out: Path, budget: float):
        self.dry, self.out = dry, out
        self.device = CPU if dry else Device.resolve("cuda")
        self.xp = self.device.xp
        self.budget, self.deadline = budget, time.monotonic() + budget
        self.current = ""  # the section running now
        self.work = Path(tempfile.mkdtemp(prefix="gpu-session-"))
        self.merged = None  # the global-month ensemble, reused by ``parity``
        env = environment(self.device.kind)
        gpu = env["machine"].get("gpu", "cpu-dry").replace(" ", "-")
        self.name = f"gpu-session-{gpu}-{env['date']}"
        self.doc = {**env, "suite": "gpu_session", "dry": dry, "budget_s": budget, "sections": {}}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def note(self, message: str) -> None:
        """Print a timed progress line and keep it in the running section's log (saved at once,
        so a run killed mid-section still says how far it got)."""
        line = f"{self.budget - self.left():7.1f} s  {message}"
        print(f"[gpu_session]   {line}", flush=True)
        self.doc["sections"][self.current]["log"].append(line)
        self.save()

    def sync(self) -> None:
        if self.device.kind == "cuda":
            self.xp.cuda.Device().synchronize()

    def save(self) -> Path:
        return write_result(self.out, self.name, self.doc)


def _timed(session: Session, fn, *args, **kwargs):
    session.sync()
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    session.sync()
    return time.perf_counter() - start, value


# --------------------------------------------------------------------------- sections
def environment_section(s: Session) -> dict:
    """GPU and library facts, free memory, measured copy bandwidth."""
    from ciml_ter.device import xgboost_has_cuda

    import xgboost

    out = {"xgboost": xgboost.__version__, "xgboost_cuda_build": xgboost_has_cuda(),
           "xgboost_build_info": {k: v for k, v in xgboost.build_info().items()
                                  if k.startswith(("USE_", "CUDA", "NCCL"))}}
    try:
        out["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,power.limit",
             "--format=csv"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        out["nvidia_smi"] = f"not available: {exc}"
    if s.device.kind == "cuda":
        import cupy
        import numba.cuda

        free, total = cupy.cuda.runtime.memGetInfo()
        out.update({"free_bytes": int(free), "total_bytes": int(total), "cupy": cupy.__version__,
                    "numba_cuda_devices": [d.name.decode() if isinstance(d.name, bytes) else d.name
                                           for d in numba.cuda.gpus]})
    a = s.xp.ones(1 << 29 if not s.dry else 1 << 20, dtype=s.xp.float32)  # 2 GiB on the card
    b = s.xp.empty_like(a)
    b[...] = a  # warm-up
    seconds = min(_timed(s, b.__setitem__, Ellipsis, a)[0] for _ in range(5))
    out["copy_gb_per_s"] = 2 * a.nbytes / seconds / 1e9  # bytes read + written
    return out


def _pytest_counts(text: str) -> dict:
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected|xfailed)", text)}
    collected = re.search(r"(\d+)(?:/\d+)? tests? collected", text)
    if collected:
        counts["collected"] = int(collected.group(1))
    return counts


def pytest_gpu_section(s: Session) -> dict:
    """``pytest -m gpu`` (``--collect-only`` when dry): counts, slowest tests and the output's
    tail; the output streams to ``<name>-pytest.log`` beside the JSON."""
    args = [sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "--color=no",
            "--durations=8", str(ROOT / "tests")] + (["--collect-only", "-q"] if s.dry else [])
    log = s.out / f"{s.name}-pytest.log"
    timeout = max(30.0, min(300.0, s.left() - 60))
    with open(log, "w", encoding="utf-8") as stream:
        try:
            code = subprocess.run(args, stdout=stream, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT).returncode
        except subprocess.TimeoutExpired:
            code = f"timeout after {timeout:.0f} s"
    text = log.read_text(encoding="utf-8", errors="replace")
    return {"returncode": code, "counts": _pytest_counts(text),
            "results": re.findall(r"^(tests/\S+) (PASSED|FAILED|ERROR|SKIPPED)", text, flags=re.M),
            "tail": text[-3000:]}


def global_month_section(s: Session) -> dict:
    """The merged ensemble on every land cell of a 0.05 deg month (``benchmarks.global_month``)."""
    folds, seeds = (3, 1) if s.dry else (10, 20)
    s.merged, seconds = global_month.trained_model(s.work / "model", folds, seeds, note=s.note, smoke=s.dry)
    pixels = 2_000 if s.dry else global_land_cells(0.05)
    timing = global_month.time_month(s.merged, s.device, pixels, budget=max(20.0, s.left() - 300), note=s.note)
    return {"sizes": {"pixels": pixels, "features": global_month.N_FEATURES, "members": s.merged.n_members,
                      "trees_total": s.merged.n_trees}, **timing, "seconds": {**seconds, **timing["seconds"]},
            "goal_seconds_h100": {"mean_std": 30, "mean_std_shap": 300}}


def _envelope_scvtg(y, dtype):
    """SG envelope + SCVTG with arithmetic in ``dtype`` (float64 or float32)."""
    return kernels.scvtg(kernels.sg_upper_envelope(y, compute_dtype=dtype), compute_dtype=dtype)


def envelope_global_section(s: Session) -> dict:
    """Envelope + SCVTG for one year of daily NIRv of every land cell, chunked by free memory."""
    land = 2_000 if s.dry else global_land_cells(0.05)
    days = 365
    # per pixel: float32 input, float64 copy, 5 float64 envelope arrays, 1 SCVTG buffer
    per_pixel = days * (4 + 8 * 7)
    if s.device.kind == "cuda":
        chunk = int(s.xp.cuda.runtime.memGetInfo()[0] * 0.5 // per_pixel)
    else:
        chunk = land
    chunk = max(1, min(chunk, land))
    sample = cloudy_daily(200 if s.dry else 20_000, seed=3).astype(np.float32)
    out: dict = {"sizes": {"land_pixels": land, "days": days, "chunk_pixels": chunk,
                           "input_bytes": land * days * 4}, "seconds": {}, "projected": {}}
    cpu_env = _envelope_scvtg(sample[:, :50], np.float64)  # compile the CPU kernels
    cpu_seconds, cpu_values = _timed(s, _envelope_scvtg, sample, np.float64)
    out["cpu_seconds_per_pixel"] = cpu_seconds / sample.shape[1]
    del cpu_env
    for dtype in (np.float64, np.float32):
        name = np.dtype(dtype).name
        gpu_sample = _envelope_scvtg(s.xp.asarray(sample), dtype)
        out[f"max_abs_diff_vs_cpu_float64_{name}"] = {
            k: float(np.nanmax(np.abs(np.asarray(_host(v)) - cpu_values[k]))) for k, v in gpu_sample.items()}
        rng = s.xp.random.default_rng(5)
        total, done = 0.0, 0
        while done < land:
            n = min(chunk, land - done)
            t = s.xp.arange(days, dtype=s.xp.float32)[:, None]
            phase = 80 * rng.random(n, dtype=s.xp.float32) - 40
            y = 0.05 + 0.35 * (0.5 - 0.5 * s.xp.cos(2 * np.pi * (t - phase) / days))
            y = y.astype(s.xp.float32)
            y[rng.random(y.shape, dtype=s.xp.float32) < 0.25] = s.xp.nan
            seconds, _ = _timed(s, _envelope_scvtg, y, dtype)
            total, done = total + seconds, done + n
            s.note(f"envelope + SCVTG {name}: {done:,} of {land:,} pixels, {total:.2f} s")
            del y
            if done < land and total * land / done > max(5.0, s.left() - 200):
                out["projected"][name] = f"from {done:,} of {land:,} pixels ({total:.2f} s)"
                total = total * land / done
                break
        out["seconds"][name] = total
        out[f"input_gb_per_s_{name}"] = land * days * 4 / total / 1e9
        out[f"ratio_vs_cpu_{name}"] = out["cpu_seconds_per_pixel"] * land / total
    out["goal_seconds_h100"] = 10
    return out


def _host(a):
    return a.get() if hasattr(a, "get") else a


def training_section(s: Session) -> dict:
    """10 x 20 ensemble on 20,000 site-months: CPU workers, then the GPU with 4 and 1 threads."""
    from ciml_ter.causal import fixed_weights
    from ciml_ter.training import train_ensemble

    n_sites, folds, seeds = (20, 3, 1) if s.dry else (200, 10, 20)
    table, weights = synthetic_table(n_sites, 100, 26)
    runs = [(CPU, 0)] if s.dry else [(CPU, 0), (s.device, 4), (s.device, 1)]
    out: dict = {"sizes": {"site_months": len(table.frame), "features": 26, "folds": folds, "seeds": seeds},
                 "runs": []}
    for device, gpu_workers in runs:
        if s.left() < 60 and out["runs"]:
            out["runs"].append({"device": device.kind, "gpu_workers": gpu_workers, "skipped": "out of time"})
            continue
        config = PipelineConfig()
        config.predictors.drivers_only()  # the table's columns only
        config.device = device.kind
        config.train.folds, config.train.seeds = folds, seeds
        config.train.nested_spread = False  # the members' training time
        config.train.gpu_workers = max(1, gpu_workers)
        if s.dry:
            smoke_rounds(config)
        s.note(f"training {folds} x {seeds} on {device}" + (f" with {gpu_workers} threads" if device.kind == "cuda" else ""))
        start = time.perf_counter()
        ensemble = train_ensemble(table, config, s.work / f"train-{device.kind}-{gpu_workers}", device,
                                  causal_result=fixed_weights(weights))
        seconds = time.perf_counter() - start
        s.note(f"trained in {seconds:.1f} s")
        oof, _ = ensemble.predict_oof(table.x, table.sites)
        best = [m["best_iteration"] for m in ensemble.manifest["members"]]
        out["runs"].append({"device": ensemble.manifest["device"], "xgboost_device": ensemble.manifest["xgboost_device"],
                            "workers": ensemble.manifest["workers"], "nthread": ensemble.manifest["nthread"],
                            "seconds": seconds, "test_mae": float(np.mean(np.abs(oof - table.y))),
                            "best_iteration_mean": float(np.mean(best))})
    out["goal_seconds_h100"] = 60
    return out


def parity_section(s: Session) -> dict:
    """Kernels and the ensemble on the CPU and on the device: max abs differences."""
    from ciml_ter.inference import predict_rows

    xp, rng = s.xp, np.random.default_rng(7)
    out: dict = {"kernels": {}}

    def both(name, fn, *arrays):
        cpu = fn(*arrays)
        gpu = fn(*(xp.asarray(a) for a in arrays))
        cpu_v = cpu if isinstance(cpu, dict) else cpu._asdict() if hasattr(cpu, "_asdict") else {"value": cpu}
        gpu_v = gpu if isinstance(gpu, dict) else gpu._asdict() if hasattr(gpu, "_asdict") else {"value": gpu}
        out["kernels"][name] = {k: float(np.nanmax(np.abs(np.asarray(_host(gpu_v[k]), dtype=np.float64)
                                                          - np.asarray(cpu_v[k], dtype=np.float64)), initial=0.0))
                                for k in cpu_v if np.asarray(cpu_v[k]).dtype.kind in "fiu"}

    daily = cloudy_daily(300, seed=8)
    both("sg_upper_envelope", kernels.sg_upper_envelope, daily)
    both("scvtg", kernels.scvtg, kernels.sg_upper_envelope(daily))
    both("mann_kendall_theil_sen", kernels.mann_kendall_theil_sen, np.round(rng.normal(size=(20, 300)), 2))
    months = np.repeat(np.arange(12), 31)[:365]
    both("monthly_median", lambda y: kernels.monthly_median(y, months), daily)
    both("block_resample", lambda y: kernels.block_resample(y, 2, "mean", 0.5), rng.normal(size=(3, 40, 60)))
    nir, red = rng.uniform(0.1, 0.5, (50, 80)), rng.uniform(0.02, 0.2, (50, 80))
    both("nirv", kernels.nirv, nir, red)
    both("lswi", kernels.lswi, nir, red)
    if s.merged is not None:
        rows = global_month.month_rows(np, 2_000)  # SHAP on the CPU: about 1e7 row.trees/s
        gpu = predict_rows(s.merged.to(s.device), xp.asarray(rows), shap=True, device=s.device)
        cpu = predict_rows(s.merged.to(CPU), rows, shap=True, device=CPU)
        out["ensemble"] = {"ter": float(np.max(np.abs(gpu.ter - cpu.ter))),
                           "ter_std": float(np.max(np.abs(gpu.ter_std - cpu.ter_std))),
                           "shap": float(np.nanmax(np.abs(gpu.shap - cpu.shap))),
                           "base": abs(gpu.base - cpu.base), "ter_scale": float(np.abs(cpu.ter).max())}
        out["merged_vs_members"] = _merged_vs_members(s, rows[:2000])
    return out


def _merged_vs_members(s: Session, rows) -> dict:
    """Max |merged prediction - mean of the members' predictions| on the device."""
    from ciml_ter.ensemble import load_ensemble

    members = load_ensemble(s.work / "model").members
    for m in members:
        m.booster.set_param({"device": s.device.xgboost})
    x = s.xp.asarray(rows)
    mean = np.mean([_host(m.booster.inplace_predict(x, iteration_range=m.iteration_range)) for m in members], axis=0)
    merged = np.sum([_host(b.inplace_predict(x)) * n for b, n in zip(s.merged.fold_boosters, s.merged.fold_sizes)],
                    axis=0) / s.merged.fold_sizes.sum()
    return {"max_abs_diff": float(np.max(np.abs(merged - mean))), "members": len(members)}


RUNNERS = {"environment": environment_section, "pytest_gpu": pytest_gpu_section,
           "global_month": global_month_section, "envelope_global": envelope_global_section,
           "training": training_section, "parity": parity_section}


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry", action="store_true", help="CPU in place of the GPU, tiny sizes (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for all sections")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    args = parser.parse_args(argv)
    wanted = [name for name in args.only.split(",") if name]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    session = Session(args.dry, args.out, args.budget)
    path = session.save()
    for name in wanted:
        start = time.perf_counter()
        print(f"[gpu_session] {name} ({session.left():.0f} s left)", flush=True)
        session.current = name
        session.doc["sections"][name] = {"status": "running", "log": []}
        try:
            entry = {"status": "ok", **RUNNERS[name](session)}
        except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
            entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                     "traceback": traceback.format_exc()[-4000:]}
        entry["wall_seconds"] = time.perf_counter() - start
        entry["log"] = session.doc["sections"][name]["log"]
        session.doc["sections"][name] = entry
        path = session.save()
        print(f"[gpu_session] {name}: {entry['status']} in {entry['wall_seconds']:.1f} s", flush=True)
    print(json.dumps({k: v.get("status") for k, v in session.doc["sections"].items()}))
    return path


if __name__ == "__main__":
    print(main())
