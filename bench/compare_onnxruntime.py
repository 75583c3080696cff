#!/usr/bin/env python3
"""Times vitscope, PyTorch and ONNX Runtime on the same models, interleaved, in one run.

Usage (after scripts/setup.sh --tools --bench; python3-torch only imports under /usr/bin/python3):
    /usr/bin/python3 bench/compare_onnxruntime.py [--models detr,vit-b1,vit-b8] [--threads 1,2]
        [--rounds 3] [--repeat 5] [--warmup 2] [--vitscope build/apps/vitscope]
        [--profile DIR] [--json OUT] [--gemm-peak build-perf/bench/gemm_peak | --peak-gflops G1,G2]
        [--bf16]

For each model, built (seeded) as compare_pytorch.py builds it, it writes into a temporary
directory the vitscope model file, the state_dict for PyTorch's workers, an ONNX file
(torch.onnx.export, opset 17, the model's fixed shapes), and the inputs and PyTorch's output as
raw float32. Then, --rounds times over, at each thread count K it runs in fresh processes:
  * vitscope bench --threads K (compare_pytorch.run_vitscope);
  * the PyTorch worker of compare_pytorch.py at each of its (OpenMP, OpenBLAS) configurations;
  * bench/onnxruntime_run.mjs: graphOptimizationLevel 'all', intraOpNumThreads K, at K > 1 with
    its pool's spinning on (ORT's default) and off; it checks ONNX Runtime's output against
    PyTorch's (the run fails beyond the tolerance).
Each process does --warmup untimed then --repeat timed forwards and gives their median; a
configuration's figure is the median of those over the rounds, which interleave the three so that
a change in the shared machine's load hits all of them alike. Each peer's figure at K is its best
configuration at K threads or fewer; the ratios are peer ms / vitscope ms (above 1: vitscope is
faster). With --profile DIR, ONNX Runtime also runs once per model with its profiler at the
smallest K, and the time of the optimized graph's operators is printed by op type.

A second table gives each figure as achieved GFLOPS: the forward's matrix-product FLOPs
(compare_pytorch.forward_flops: every Linear and attention's QK^T and weights.V products, 2 per
multiply-add; elementwise work is printed apart and not counted) over the median time. With
--gemm-peak PATH it first runs that gemm_peak binary (bench/gemm_peak.cpp) once at each K and takes
the best GFLOPS over its shapes, vitscope's or the BLAS's, as the machine's fp32 GEMM peak at K
threads, and gives vitscope's share of it; --peak-gflops gives those peaks instead, one per --threads
entry in the same order. With --bf16, vitscope also runs with --precision bf16 in each round, and
a third table sets it against vitscope at fp32 and against the peers (which stay fp32).

Timing never runs under ctest: this is a tool for people, not a test.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import warnings
from collections import defaultdict
from pathlib import Path

import torch

import compare_pytorch as cp
from export_pytorch import export_transformer

HERE = Path(__file__).resolve().parent
NODE_RUNNER = HERE / "onnxruntime_run.mjs"
OPSET = 17  # the newest PyTorch 1.13's exporter writes; ONNX Runtime 1.30 reads it
# ONNX Runtime fuses and reorders the sums (attention, LayerNorm, GEMM blocking), so its output
# differs from PyTorch's by rounding: allowed |ort - torch| <= TOLERANCE * max(1, max |torch|).
TOLERANCE = 1e-4


class Forward(torch.nn.Module):
    """nn.Transformer's forward (or its encoder's) on positional tensors, for torch.onnx to trace."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, src, tgt=None):
        return cp.forward(self.model, src, tgt)


def write_f32(tensor, path: Path):
    tensor.detach().contiguous().numpy().astype("<f4").tofile(path)
    return {"file": str(path), "dims": list(tensor.shape)}


def prepare(name: str, tmp: Path):
    """Writes every file the three peers read for this model; returns their paths."""
    model = cp.build_model(name)
    src, tgt = cp.inputs(name)
    files = {"vitscope": tmp / f"{name}.safetensors", "state": tmp / f"{name}.pt",
             "onnx": tmp / f"{name}.onnx", "spec": tmp / f"{name}.json"}
    export_transformer(model, str(files["vitscope"]))
    torch.save(model.state_dict(), files["state"])
    args = (src,) if tgt is None else (src, tgt)
    names = ["src"] if tgt is None else ["src", "tgt"]
    # Grad enabled on purpose, for both: under no_grad PyTorch 1.13 takes its fused encoder path
    # (aten::_transformer_encoder_layer_fwd), which has no ONNX export.
    expected = cp.forward(model, src, tgt)
    with warnings.catch_warnings():
        # The tracer warns that checks on tensor values are frozen into the trace: harmless, the
        # ONNX file only ever runs at the shapes it was traced with.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(Forward(model), args, str(files["onnx"]), opset_version=OPSET,
                          input_names=names, output_names=["out"])
    spec = {"model": str(files["onnx"]),
            "inputs": [dict(name=n, **write_f32(t, tmp / f"{name}.{n}.f32")) for n, t in zip(names, args)],
            "expected": write_f32(expected, tmp / f"{name}.out.f32"),
            "tolerance": TOLERANCE}
    files["spec"].write_text(json.dumps(spec))
    return files


def run_ort(spec: Path, threads: int, args, spin: int = 1, profile: str = None):
    command = ["node", str(NODE_RUNNER), str(spec), "--threads", str(threads), "--spin", str(spin),
               "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
    if profile:
        command += ["--profile", profile]
    run = subprocess.run(command, capture_output=True, text=True)
    if run.returncode != 0 and not run.stdout.strip():
        sys.exit(f"compare_onnxruntime.py: {' '.join(command)} failed:\n{run.stderr}")
    report = json.loads(run.stdout.strip().splitlines()[-1])
    if not report["ok"]:
        sys.exit(f"compare_onnxruntime.py: {spec.stem}: ONNX Runtime's output is off PyTorch's by "
                 f"{report['worst_abs_err']:.3g} (max |output| {report['max_abs_ref']:.3g}, "
                 f"tolerance {TOLERANCE:g} relative)")
    return report


def time_model(name: str, files, thread_counts, args):
    """Interleaved rounds; returns {(peer, k, config): [per-process medians]}, ORT's parity and
    the kernel level vitscope ran."""
    medians = defaultdict(list)
    parity = None
    for _ in range(args.rounds):
        for k in thread_counts:
            v = cp.run_vitscope(args.vitscope, files["vitscope"], name, k, args)
            medians[("vitscope", k, f"threads {k}")].append(v["forward_ms"])
            kernels = v["kernels"]
            if args.bf16:
                v = cp.run_vitscope(args.vitscope, files["vitscope"], name, k, args, precision="bf16")
                medians[("vitscope_bf16", k, f"threads {k}")].append(v["forward_ms"])
            for omp, blas in cp.torch_configs(k):
                t = cp.run_torch(name, files["state"], omp, blas, args)
                medians[("torch", k, f"omp {omp}, blas {blas}")].append(statistics.median(t["fast"]))
            # Spinning only matters with a pool, that is with more than one thread.
            for spin in (1, 0) if k > 1 else (1,):
                o = run_ort(files["spec"], k, args, spin=spin)
                medians[("ort", k, f"{k}, spin {spin}")].append(statistics.median(o["forward_ms"]))
                if parity is None or o["worst_abs_err"] > parity[0]:
                    parity = (o["worst_abs_err"], o["max_abs_ref"])
    return medians, parity, kernels


def torch_capability() -> str:
    """ATen's vectorised kernel level, as torch.__config__.show() reports it."""
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def ort_version() -> str:
    package = HERE / "node_modules" / "onnxruntime-node" / "package.json"
    return json.loads(package.read_text()).get("version", "unknown")


def figure(medians, peer: str, k: int, at_most: bool):
    """The peer's fastest configuration at k threads (or fewer): (ms, threads, config)."""
    return min((statistics.median(ms), kk, config) for (p, kk, config), ms in medians.items()
               if p == peer and (kk <= k if at_most else kk == k))


def profile_ort(name: str, files, threads: int, out_dir: Path, args):
    """ONNX Runtime's time per op type over the timed runs of one profiled process."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_ort(files["spec"], threads, args, profile=str(out_dir / f"{name}_k{threads}"))
    trace = max(out_dir.glob(f"{name}_k{threads}*.json"), key=lambda p: p.stat().st_mtime)
    events = json.loads(trace.read_text())
    runs = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    timed = runs[args.warmup:]
    first = timed[0]["ts"] if timed else 0
    per_op = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= first:
            per_op[e["args"]["op_name"]] += e["dur"] / 1e3 / max(1, len(timed))
    total = sum(per_op.values())
    print(f"\nONNX Runtime, {cp.describe(name)}, intraOpNumThreads {threads}, ms per forward "
          f"by op type of the optimized graph ({trace}):\n")
    print("| op type | ms | share |\n| --- | --- | --- |")
    for op, ms in sorted(per_op.items(), key=lambda item: -item[1]):
        print(f"| {op} | {ms:.1f} | {100 * ms / total:.0f}% |")
    print(f"| all | {total:.1f} | |")


def measure_peaks(binary: str, thread_counts, repeat: int = 10):
    """{k: (GFLOPS, where, bf16 GFLOPS or None)}: gemm_peak's best over its shapes and its fp32
    columns at k threads, and over its bf16 column where the CPU has one."""
    peaks = {}
    for k in thread_counts:
        run = subprocess.run([binary, "--threads", str(k), "--repeat", str(repeat)],
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"compare_onnxruntime.py: {binary} --threads {k} failed:\n{run.stderr}")
        best, best_bf16 = None, None
        for line in run.stdout.splitlines():
            fields = line.split()
            if line.startswith("#") or len(fields) not in (5, 6) or not fields[0].isdigit():
                continue  # the comment and the column names
            m, n, kk = fields[:3]
            for column, value in (("vitscope", fields[3]), ("blas", fields[4])):
                if best is None or float(value) > best[0]:
                    best = (float(value), f"{column} {m}x{n}x{kk}")
            if len(fields) == 6:
                best_bf16 = max(best_bf16 or 0.0, float(fields[5]))
        if best is None:
            sys.exit(f"compare_onnxruntime.py: no GFLOPS in {binary}'s output:\n{run.stdout}")
        peaks[k] = best + (best_bf16,)
    return peaks


def parse_peaks(text: str, threads_given):
    values = [float(v) for v in text.split(",") if v.strip()]
    if len(values) != len(threads_given):
        sys.exit(f"compare_onnxruntime.py: --peak-gflops has {len(values)} values for "
                 f"{len(threads_given)} thread counts ({','.join(map(str, threads_given))})")
    return {k: (g, "given") for k, g in zip(threads_given, values)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=cp.DEFAULT_MODELS,
                        help=f"comma-separated, from {', '.join(cp.MODELS)} (default: %(default)s)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of fresh processes (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed forwards per process (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed forwards first (default: %(default)s)")
    parser.add_argument("--vitscope", help="the vitscope binary (default: build-perf/ or build/ apps/vitscope)")
    parser.add_argument("--profile", help="also profile ONNX Runtime, traces into this directory")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--bf16", action="store_true",
                        help="also time vitscope with --precision bf16 (CPUs with AVX-512 BF16)")
    peak = parser.add_mutually_exclusive_group()
    peak.add_argument("--gemm-peak", metavar="PATH",
                      help="the gemm_peak binary (build-perf/bench/gemm_peak): run once at each K at "
                           "the start, its best GFLOPS is the peak vitscope's GFLOPS are set against")
    peak.add_argument("--peak-gflops", metavar="G1,G2",
                      help="measured fp32 GEMM peaks in GFLOPS, one per --threads entry, same order")
    args = parser.parse_args(argv)
    args.reference = False  # compare_pytorch's worker: only PyTorch's fast path is timed here
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in cp.MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {list(cp.MODELS)}")
    threads_given = [int(t) for t in args.threads.split(",")]
    thread_counts = sorted(threads_given)
    args.vitscope = cp.find_vitscope(args.vitscope)
    if not (HERE / "node_modules" / "onnxruntime-node").is_dir():
        sys.exit("compare_onnxruntime.py: bench/node_modules/onnxruntime-node is missing; "
                 "run scripts/setup.sh --bench")
    peaks = parse_peaks(args.peak_gflops, threads_given) if args.peak_gflops else {}
    if args.gemm_peak and not os.access(args.gemm_peak, os.X_OK):
        parser.error(f"--gemm-peak {args.gemm_peak}: no such executable (build it with "
                     "-DVITSCOPE_BUILD_BENCH=ON, target gemm_peak)")

    print(f"# {cp.cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
          f"{args.rounds} rounds x (median of {args.repeat} after {args.warmup} warm-up); "
          f"vitscope: {args.vitscope}; load average at start: {os.getloadavg()[0]:.2f}")
    if args.gemm_peak:
        peaks = measure_peaks(args.gemm_peak, thread_counts)
    if peaks:
        print("# fp32 GEMM peak: " + "; ".join(
            f"K={k} {peak[0]:.1f} GFLOPS ({peak[1]})" + (f", bf16 {peak[2]:.1f}" if len(peak) > 2 and peak[2] else "")
            for k, peak in sorted(peaks.items()))
            + (" (gemm_peak --repeat 10, best over its shapes)" if args.gemm_peak else ""),
            flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="vitscope-ort-") as tmp:
        for name in names:
            flops = cp.forward_flops(name)
            print(f"# {name}: {flops['matmul'] / 1e9:.2f} GFLOP a forward in matrix products "
                  f"({flops['linear'] / 1e9:.2f} Linear, {flops['attention'] / 1e9:.2f} attention); "
                  f"{flops['other'] / 1e9:.3f} elementwise, not counted", flush=True)
            files = prepare(name, Path(tmp))
            medians, parity, kernels = time_model(name, files, thread_counts, args)
            print(f"# {name}: ONNX Runtime against PyTorch, worst abs error {parity[0]:.2g} "
                  f"(max |output| {parity[1]:.3g}; tolerance {TOLERANCE:g} relative)", flush=True)
            print(f"# {name}: kernels: vitscope {kernels}; PyTorch ATen {torch_capability()}, "
                  f"GEMMs in OpenBLAS; ONNX Runtime {ort_version()}, its own MLAS kernels for "
                  f"this CPU", flush=True)
            for k in thread_counts:
                row = {"model": cp.describe(name), "K": k, "gflop": flops["matmul"] / 1e9,
                       "gflop_other": flops["other"] / 1e9}
                # vitscope at K threads against each peer's best at K or fewer.
                for peer in ("vitscope", "torch", "ort") + (("vitscope_bf16",) if args.bf16 else ()):
                    ms, kk, config = figure(medians, peer, k, at_most=not peer.startswith("vitscope"))
                    row[peer] = {"ms": ms, "threads": kk, "config": config,
                                 "gflops": flops["matmul"] / ms / 1e6}
                if k in peaks:
                    row["peak_gflops"] = peaks[k][0]
                    row["peak_source"] = peaks[k][1]
                    if len(peaks[k]) > 2:
                        row["bf16_peak_gflops"] = peaks[k][2]
                    row["vitscope"]["share_of_peak"] = row["vitscope"]["gflops"] / peaks[k][0]
                row["all"] = {" / ".join(map(str, key)): ms for key, ms in medians.items() if key[1] == k}
                rows.append(row)
            if args.profile:
                profile_ort(name, files, thread_counts[0], Path(args.profile), args)
    print_table(rows)
    print(f"# load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def print_table(rows) -> None:
    print("\n| model | K | vitscope ms | PyTorch ms (threads: omp, blas) | ORT ms (intra-op, spin) | "
          "vitscope/PyTorch | vitscope/ORT |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        v, t, o = r["vitscope"]["ms"], r["torch"], r["ort"]
        print(f"| {r['model']} | {r['K']} | {v:.1f} | {t['ms']:.1f} ({t['config']}) | "
              f"{o['ms']:.1f} ({o['config']}) | {t['ms'] / v:.2f}x | {o['ms'] / v:.2f}x |")
    with_peak = all("peak_gflops" in r for r in rows)
    print("\nAchieved GFLOPS (matrix-product FLOPs / median ms; each peer at the setting above)"
          + (", against the fp32 GEMM peak at K threads" if with_peak else "") + ":\n")
    print("| model | GFLOP | K | vitscope | PyTorch | ORT |"
          + (" GEMM peak | vitscope / peak |" if with_peak else ""))
    print("| --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if with_peak else ""))
    for r in rows:
        line = (f"| {r['model']} | {r['gflop']:.2f} | {r['K']} | {r['vitscope']['gflops']:.0f} | "
                f"{r['torch']['gflops']:.0f} | {r['ort']['gflops']:.0f} |")
        if with_peak:
            line += f" {r['peak_gflops']:.0f} | {100 * r['vitscope']['share_of_peak']:.0f}% |"
        print(line)
    if all("vitscope_bf16" in r for r in rows):
        print("\nvitscope with --precision bf16 (GEMM operands in bfloat16, fp32 accumulation; its "
              "errors are the ctest *_parity_bf16 entries'), against the same peers at fp32:\n")
        with_bf16_peak = all(r.get("bf16_peak_gflops") for r in rows)
        print("| model | K | vitscope bf16 ms | GFLOPS | vitscope fp32 / bf16 | PyTorch / bf16 | ORT / bf16 |"
              + (" bf16 GEMM peak | bf16 / its peak |" if with_bf16_peak else ""))
        print("| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if with_bf16_peak else ""))
        for r in rows:
            b = r["vitscope_bf16"]
            line = (f"| {r['model']} | {r['K']} | {b['ms']:.1f} | {b['gflops']:.0f} | "
                    f"{r['vitscope']['ms'] / b['ms']:.2f}x | {r['torch']['ms'] / b['ms']:.2f}x | "
                    f"{r['ort']['ms'] / b['ms']:.2f}x |")
            if with_bf16_peak:
                line += f" {r['bf16_peak_gflops']:.0f} | {100 * b['gflops'] / r['bf16_peak_gflops']:.0f}% |"
            print(line)


if __name__ == "__main__":
    sys.exit(main())
