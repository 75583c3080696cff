#!/usr/bin/env python3
"""Times torchvision's resnet50 body (conv1..layer4) against vitscope's image::ResNet on one image.

Usage (Debian's python3-torch and python3-torchvision only import from the system interpreter):
    /usr/bin/python3 bench/resnet_backbone.py --vitscope build-perf/bench/resnet_backbone

Builds torchvision's full-width resnet50() with seeded random weights (no download) in eval mode,
writes its state_dict (fc.* dropped) to a temporary safetensors file, then at each thread count
times IntermediateLayerGetter(model, {"layer4": "0"}) under torch.inference_mode() in a fresh
process (torch.set_num_threads(K)) and the C++ bench on the same weights and pixels: medians of
--repeat forwards after one warm-up, and the worst |C5| difference between the two.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))


def build_model(dilation: bool):
    import torch
    from torchvision.models import resnet50
    from torchvision.models._utils import IntermediateLayerGetter
    torch.manual_seed(0)
    model = resnet50(replace_stride_with_dilation=[False, False, dilation]).eval()
    return model, IntermediateLayerGetter(model, {"layer4": "0"})


def torch_worker(args) -> None:
    """Runs in a fresh process: one JSON line of torch's timings at args.threads."""
    import torch
    torch.set_num_threads(args.threads)
    _, body = build_model(args.dilation)
    pixels = torch.from_numpy(np.load(args.input))
    times = []
    with torch.inference_mode():
        c5 = body(pixels)["0"]
        for _ in range(args.repeat):
            start = time.perf_counter()
            c5 = body(pixels)["0"]
            times.append((time.perf_counter() - start) * 1e3)
    np.save(args.out, c5.numpy())
    print(json.dumps({"median_ms": float(np.median(times)), "min_ms": min(times)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vitscope", default=str(ROOT / "build-perf/bench/resnet_backbone"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1066)
    parser.add_argument("--dilation", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    if args.worker:
        args.threads = int(args.threads)
        torch_worker(args)
        return

    from safetensors_io import write_safetensors
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = build_model(args.dilation)
        weights = str(Path(tmp) / "resnet50.safetensors")
        write_safetensors(weights, {k: v.float().numpy() for k, v in model.state_dict().items()
                                    if not k.startswith("fc.")})
        pixels = str(Path(tmp) / "pixels.npy")
        np.save(pixels, np.random.default_rng(0).standard_normal(
            (1, 3, args.height, args.width), dtype=np.float32))
        print(f"resnet50 body, 1x3x{args.height}x{args.width}, dilation {args.dilation}, "
              f"median of {args.repeat} (ms)")
        print("| K | torchvision | vitscope | speedup | vitscope load | worst abs C5 diff (max abs C5) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for threads in args.threads.split(","):
            torch_c5, ours_c5 = str(Path(tmp) / "torch.npy"), str(Path(tmp) / "ours.npy")
            worker = [sys.executable, __file__, "--worker", "--threads", threads, "--repeat",
                      str(args.repeat), "--input", pixels, "--out", torch_c5]
            if args.dilation:
                worker.append("--dilation")
            theirs = json.loads(subprocess.run(worker, check=True, capture_output=True, text=True).stdout)
            ours_cmd = [args.vitscope, weights, "--threads", threads, "--repeat", str(args.repeat),
                        "--input", pixels, "--out", ours_c5] + (["--dilation"] if args.dilation else [])
            ours = json.loads(subprocess.run(ours_cmd, check=True, capture_output=True, text=True).stdout)
            reference = np.load(torch_c5)
            diff = float(np.abs(reference - np.load(ours_c5)).max())
            print(f"| {threads} | {theirs['median_ms']:.1f} | {ours['median_ms']:.1f} | "
                  f"{theirs['median_ms'] / ours['median_ms']:.2f}x | {ours['load_ms']:.0f} | {diff:.2g} ({np.abs(reference).max():.3g}) |")


if __name__ == "__main__":
    main()
