#!/usr/bin/env python3
"""Times PyTorch and `vitscope bench` on the same models, the same machine, in one run.

Usage (Debian's python3-torch only imports from the system interpreter):
    /usr/bin/python3 bench/compare_pytorch.py [--models detr,vit-b1,vit-b8] [--threads 1,2]
        [--repeat 7] [--warmup 2] [--vitscope build/apps/vitscope] [--reference] [--json OUT]
    /usr/bin/python3 bench/compare_pytorch.py --flops [--models ...]   # FLOPs per forward, no timing

For each model it builds the torch module (seeded), exports it with tools/export_pytorch.py into a
temporary directory, then at each thread count K:
  * times PyTorch in fresh worker processes whose OpenMP and OpenBLAS pools are sized by
    OMP_NUM_THREADS / torch.set_num_threads and OPENBLAS_NUM_THREADS: at K = 1 both have one
    thread; at K > 1 it tries K and K, K and 1, 1 and K, and keeps the fastest; eval() under
    torch.inference_mode(), its fastest path (batch_first models take the native fused encoder
    layer); with --reference also its reference path (grad enabled, as the parity fixtures use);
  * runs `vitscope bench --threads K` on the exported file with the same shapes.
Load time (file to ready module) and forward time (median of --repeat forwards after --warmup)
are separate figures. The ratio column is PyTorch's best median at K threads or fewer divided by
vitscope's median at K threads (higher is better for vitscope). Whatever OPENBLAS_CORETYPE the
environment sets is passed to both sides unchanged and printed in the header.

Timing never runs under ctest: this is a tool for people, not a test.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

# name -> (constructor arguments, src_len, tgt_len (0: encoder only), batch, encoder_norm)
MODELS = {
    # DETR-like: post-norm encoder without a final norm, 6+6 layers over an 850-token feature map.
    "detr": (dict(d_model=256, nhead=8, num_encoder_layers=6, num_decoder_layers=6,
                  dim_feedforward=2048, activation="relu", norm_first=False, batch_first=True),
             850, 100, 1, False),
    # ViT-S/16-like encoder at 224x224: 196 patches + a class token.
    "vit-b1": (dict(d_model=384, nhead=6, num_encoder_layers=12, num_decoder_layers=0,
                    dim_feedforward=1536, activation="gelu", norm_first=True, batch_first=True),
               197, 0, 1, True),
    "vit-b8": (dict(d_model=384, nhead=6, num_encoder_layers=12, num_decoder_layers=0,
                    dim_feedforward=1536, activation="gelu", norm_first=True, batch_first=True),
               197, 0, 8, True),
    # Long sequence (memory): ViT-S-like encoder over 4096 tokens.
    "vit-s4096": (dict(d_model=384, nhead=6, num_encoder_layers=12, num_decoder_layers=0,
                       dim_feedforward=1536, activation="gelu", norm_first=True, batch_first=True),
                  4096, 0, 1, True),
}
DEFAULT_MODELS = "detr,vit-b1,vit-b8"
SEED = 0


def build_model(name: str):
    import torch
    import torch.nn as nn
    args, _, _, _, encoder_norm = MODELS[name]
    torch.manual_seed(SEED)
    model = nn.Transformer(dropout=0.0, **args)
    if not encoder_norm:
        model.encoder.norm = None
    # Non-trivial biases and norms (PyTorch initialises them to 0 / 1).
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if param.dim() == 1:
                param.normal_(1.0 if "norm" in param_name and "weight" in param_name else 0.0, 0.1)
    return model.eval()


def inputs(name: str):
    import torch
    args, src_len, tgt_len, batch, _ = MODELS[name]
    gen = torch.Generator().manual_seed(SEED)
    shape = (lambda length: (batch, length, args["d_model"]) if args["batch_first"]
             else (length, batch, args["d_model"]))
    src = torch.randn(*shape(src_len), generator=gen)
    tgt = torch.randn(*shape(tgt_len), generator=gen) if tgt_len else None
    return src, tgt


# ------------------------------------------------------------------------------------------------
# Floating-point operations of one forward pass, from the model's configuration (MODELS).
#
# Matrix products count 2 FLOPs per multiply-add: every Linear (in_proj's q, k and v, out_proj,
# linear1, linear2) and attention's two products per head, scores = Q K^T and weights . V, each
# L x S x head_dim multiply-adds (L queries, S keys). Cross-attention projects q (and out_proj)
# over the T target tokens, k and v over the S memory tokens, in every decoder layer.
# "other" is the elementwise work, counted at these per-element costs (a transcendental counts
# as one operation, so it is a lower bound of what a CPU executes): Linear bias 1, residual add 1,
# LayerNorm 8 (mean 1, variance 3, normalise 2, affine 2), softmax 5 per score (max, subtract,
# exp, sum, divide) plus 1 per q element for the 1/sqrt(head_dim) scaling, ReLU 1, GELU 8 (erf
# counted as one). That is 1.2% of the matrix products on the DETR-like model, 0.8% on the ViT-S
# ones (1.5% at S = 4096): not negligible enough to drop, so it is its own figure, and achieved
# GFLOPS (compare_onnxruntime.py) are the matrix products' FLOPs over the time.
# The matrix-product counts equal what torch.profiler(with_flops=True) gives for aten::addmm and
# aten::bmm on the grad-enabled forward of these models.
GELU_OPS, LAYERNORM_OPS, SOFTMAX_OPS = 8, 8, 5


def forward_flops(name: str):
    """FLOPs of one forward of the bench model `name`, counted from MODELS (no torch needed).

    Returns {"linear", "attention", "matmul" (= linear + attention), "encoder" (its matmul part),
    "other" (elementwise, see above)}, all for the whole batch."""
    args, src_len, tgt_len, batch, encoder_norm = MODELS[name]
    d, heads, ffn = args["d_model"], args["nhead"], args["dim_feedforward"]
    act_ops = GELU_OPS if args["activation"] == "gelu" else 1
    linear = attention = other = 0

    def mha(queries: int, keys: int):
        # q over the queries, k and v over the keys, out_proj over the queries.
        nonlocal linear, attention, other
        linear += 2 * (2 * queries * d * d + 2 * keys * d * d)
        # heads x (L x S x head_dim) for each of Q K^T and weights . V: 2 x L x S x d in all.
        attention += 2 * 2 * queries * keys * d
        other += (2 * queries + 2 * keys) * d            # the four projections' biases
        other += heads * queries * keys * SOFTMAX_OPS + queries * d  # softmax, q scaling
        other += queries * d                             # the residual add

    def ffn_block(tokens: int):
        nonlocal linear, other
        linear += 2 * 2 * tokens * d * ffn
        other += tokens * (ffn + d)                      # biases
        other += tokens * ffn * act_ops + tokens * d     # activation, residual add

    for _ in range(args["num_encoder_layers"]):
        mha(src_len, src_len)
        ffn_block(src_len)
        other += 2 * src_len * d * LAYERNORM_OPS
    encoder = linear + attention
    if encoder_norm:
        other += src_len * d * LAYERNORM_OPS
    for _ in range(args["num_decoder_layers"]):
        mha(tgt_len, tgt_len)   # self-attention over the T queries
        mha(tgt_len, src_len)   # cross-attention: q from T tokens, k and v from the S memory
        ffn_block(tgt_len)
        other += 3 * tgt_len * d * LAYERNORM_OPS
    if args["num_decoder_layers"]:
        other += tgt_len * d * LAYERNORM_OPS  # nn.Transformer's decoder norm
    flops = {"linear": linear, "attention": attention, "matmul": linear + attention,
             "encoder": encoder, "other": other}
    return {key: batch * value for key, value in flops.items()}


def forward(model, src, tgt):
    return model(src, tgt) if tgt is not None else model.encoder(src)


def time_calls(fn, warmup: int, repeat: int):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


# ------------------------------------------------------------------------------------------------
# The PyTorch worker: one process per (model, thread count), so each has its own pools.

def torch_worker(args) -> None:
    import torch
    torch.set_num_threads(args.worker_threads)
    name = args.worker_model
    start = time.perf_counter()
    model = build_model(name)  # construction, as a loader would do it
    model.load_state_dict(torch.load(args.worker_state, map_location="cpu"))
    model.eval()
    load_ms = (time.perf_counter() - start) * 1e3
    src, tgt = inputs(name)
    report = {"load_ms": load_ms, "threads": torch.get_num_threads()}

    def fast():
        with torch.inference_mode():
            forward(model, src, tgt)
    report["fast"] = time_calls(fast, args.warmup, args.repeat)
    if args.reference:
        report["reference"] = time_calls(lambda: forward(model, src, tgt), args.warmup,
                                         args.repeat)
    print(json.dumps(report))


def torch_configs(k: int):
    """(OpenMP, OpenBLAS) thread counts to try at k threads, the fastest of which is PyTorch's figure.

    PyTorch runs an OpenMP pool and (Debian) OpenBLAS's own threads: at k > 1 try k of both, and k
    of either with 1 of the other."""
    return [(k, k)] + ([(k, 1), (1, k)] if k > 1 else [])


def run_torch(name: str, state_path: Path, omp_threads: int, blas_threads: int, args):
    env = dict(os.environ, OMP_NUM_THREADS=str(omp_threads),
               OPENBLAS_NUM_THREADS=str(blas_threads), MKL_NUM_THREADS=str(blas_threads))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker-model", name,
               "--worker-state", str(state_path), "--worker-threads", str(omp_threads),
               "--repeat", str(args.repeat), "--warmup", str(args.warmup)]
    if args.reference:
        command.append("--reference")
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_vitscope(binary: str, model_path: Path, name: str, threads: int, args,
                 precision: str = "fp32"):
    _, src_len, tgt_len, batch, _ = MODELS[name]
    command = [binary, "bench", "--model", str(model_path), "--src-len", str(src_len),
               "--batch", str(batch), "--threads", str(threads), "--repeat", str(args.repeat),
               "--warmup", str(args.warmup)]
    if precision != "fp32":
        command += ["--precision", precision]
    if tgt_len:
        command += ["--tgt-len", str(tgt_len)]
    # /usr/bin/time -v measures the whole process's peak resident set, weights included.
    timed = Path("/usr/bin/time").exists()
    if timed:
        command = ["/usr/bin/time", "-v"] + command
    run = subprocess.run(command, check=True, capture_output=True, text=True)
    report = json.loads(run.stdout)
    if timed:
        for line in run.stderr.splitlines():
            if "Maximum resident set size" in line:
                report["time_max_rss_mb"] = int(line.rsplit(":", 1)[1]) / 1024.0
    return report


# ------------------------------------------------------------------------------------------------

def find_vitscope(given):
    if given:
        return given
    for build in ("build-perf", "build"):
        candidate = ROOT / build / "apps" / "vitscope"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("vitscope")
    if not found:
        sys.exit("compare_pytorch.py: error: no vitscope binary found; pass --vitscope PATH")
    return found


def cpu_model() -> str:
    """lscpu's model name, family and model, and the vector extensions the kernels care about:
    names like "AMD EPYC" say little, the family and flags say which machine it was."""
    fields = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    except OSError:
        pass
    name = fields.get("Model name") or platform.processor() or "unknown"
    flags = set(fields.get("Flags", "").split())
    vector = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (f"{name} (family {fields.get('CPU family', '?')} model {fields.get('Model', '?')}; "
            f"{' '.join(vector) or 'no AVX2'})")


def describe(name: str) -> str:
    args, src_len, tgt_len, batch, _ = MODELS[name]
    shape = f"S={src_len}" + (f" T={tgt_len}" if tgt_len else "") + f" N={batch}"
    return f"{name} ({shape})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default=DEFAULT_MODELS,
                        help=f"comma-separated, from {', '.join(MODELS)} (default: %(default)s)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=7, help="timed forwards (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards first (default: %(default)s)")
    parser.add_argument("--vitscope", help="the vitscope binary (default: build-perf/ or build/ apps/vitscope)")
    parser.add_argument("--reference", action="store_true",
                        help="also time PyTorch's reference path (grad enabled)")
    parser.add_argument("--no-torch", action="store_true", help="time vitscope only")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--flops", action="store_true",
                        help="print each model's FLOPs per forward (forward_flops) and exit")
    # Internal: the per-thread-count PyTorch worker.
    parser.add_argument("--worker-model", help=argparse.SUPPRESS)
    parser.add_argument("--worker-state", help=argparse.SUPPRESS)
    parser.add_argument("--worker-threads", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_model:
        torch_worker(args)
        return 0

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {list(MODELS)}")
    if args.flops:
        print_flops(names)
        return 0

    import torch
    from export_pytorch import export_transformer

    thread_counts = [int(t) for t in args.threads.split(",")]
    binary = find_vitscope(args.vitscope)

    print(f"# {cpu_model()}, {os.cpu_count()} CPUs; torch {torch.__version__}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}; "
          f"median of {args.repeat} after {args.warmup} warm-up; vitscope: {binary}")
    try:
        load = os.getloadavg()[0]
        print(f"# load average at start: {load:.2f}")
    except OSError:
        pass
    results = []
    with tempfile.TemporaryDirectory(prefix="vitscope-bench-") as tmp:
        for name in names:
            model = build_model(name)
            model_path = Path(tmp) / f"{name}.safetensors"
            state_path = Path(tmp) / f"{name}.pt"
            export_transformer(model, str(model_path))
            torch.save(model.state_dict(), state_path)
            del model
            best_torch = None
            for k in thread_counts:
                row = {"model": name, "threads": k}
                if not args.no_torch:
                    t = None
                    for omp, blas in torch_configs(k):
                        trial = run_torch(name, state_path, omp, blas, args)
                        trial["config"] = f"omp {omp}, blas {blas}"
                        if t is None or statistics.median(trial["fast"]) < statistics.median(t["fast"]):
                            t = trial
                    row["torch_config"] = t["config"]
                    row["torch_load_ms"] = t["load_ms"]
                    row["torch_ms"] = statistics.median(t["fast"])
                    row["torch_ms_min"] = min(t["fast"])
                    if "reference" in t:
                        row["torch_reference_ms"] = statistics.median(t["reference"])
                    # PyTorch's best at k threads or fewer (thread counts are run in order).
                    if best_torch is None or row["torch_ms"] < best_torch:
                        best_torch = row["torch_ms"]
                    row["torch_best_ms"] = best_torch
                v = run_vitscope(binary, model_path, name, k, args)
                row["vitscope_kernels"] = v.get("kernels", "?")
                row["vitscope_load_ms"] = v["load_ms"]
                row["vitscope_ms"] = v["forward_ms"]
                row["vitscope_ms_min"] = v["forward_ms_min"]
                row["vitscope_peak_rss_mb"] = v.get("time_max_rss_mb", v["peak_rss_mb"])
                if best_torch is not None:
                    row["speedup"] = best_torch / v["forward_ms"]
                results.append(row)
                print_row(name, row, first=len(results) == 1)

    if results:
        print(f"# vitscope kernels: {results[0]['vitscope_kernels']}")
    try:
        print(f"# load average at end: {os.getloadavg()[0]:.2f}")
    except OSError:
        pass
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_flops(names) -> None:
    print("| model | GFLOP matrix products | of which Linear | attention (QK^T, weights.V) | "
          "encoder | other (elementwise) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        f = forward_flops(name)
        print(f"| {describe(name)} | {f['matmul'] / 1e9:.2f} | {f['linear'] / 1e9:.2f} | "
              f"{f['attention'] / 1e9:.2f} | {f['encoder'] / 1e9:.2f} | "
              f"{f['other'] / 1e9:.3f} ({100 * f['other'] / f['matmul']:.1f}%) |")


def fmt(value, spec=".1f"):
    return "-" if value is None else format(value, spec)


def print_row(name: str, row, first: bool) -> None:
    if first:
        print("| model | K | torch threads | torch load ms | vitscope load ms | torch fwd ms | "
              "torch ref ms | torch best<=K ms | vitscope fwd ms (min) | speedup | "
              "vitscope max RSS MiB |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {describe(name)} | {row['threads']} | {row.get('torch_config', '-')} | "
          f"{fmt(row.get('torch_load_ms'))} | "
          f"{fmt(row['vitscope_load_ms'])} | {fmt(row.get('torch_ms'))} | "
          f"{fmt(row.get('torch_reference_ms'))} | {fmt(row.get('torch_best_ms'))} | "
          f"{fmt(row['vitscope_ms'])} ({fmt(row['vitscope_ms_min'])}) | "
          f"{fmt(row.get('speedup'), '.2f')}{'x' if 'speedup' in row else ''} | "
          f"{fmt(row['vitscope_peak_rss_mb'], '.0f')} |",
          flush=True)


if __name__ == "__main__":
    sys.exit(main())
