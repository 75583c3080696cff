#!/usr/bin/env python3
"""Regenerates tests/fixtures/resnet/<case>/ from seeded torchvision ResNets (no download).

Usage (Debian's python3-torch and python3-torchvision only import from the system interpreter):
    /usr/bin/python3 tools/make_resnet_fixtures.py

Each case folder holds model.safetensors (the model's state_dict under torchvision's names, fc.*
dropped, num_batches_tracked kept as torchvision writes it), inputs <name>.input.npy (B,3,H,W) and
the backbone's C5 <name>.c5.npy (B,C5,h,w) = IntermediateLayerGetter(model, {"layer4": "0"}).
case.json:
    {"description", "tolerance", "block", "layers", "planes", "width_per_group", "dilation",
     "inputs": [name, ...]}

Full-width ResNets are 45-100 MB of float32, so the cases are torchvision's own ResNet, BasicBlock
and Bottleneck with the stages' planes divided by 8 (detr_model.SlimResNet: the stem stays 64 wide, as
torchvision's). The arithmetic is torchvision's; only the widths are smaller. BatchNorm running
statistics and affine parameters are randomised so folding them into the convolutions is tested.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.resnet import BasicBlock, Bottleneck

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detr_model import SlimResNet  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "resnet"
TOLERANCE = 1e-4
PLANES_DIVISOR = 8


CASES = {
    # BasicBlock as resnet18/34: downsample in every stage (the stem is wider than layer1).
    "basic_2222": dict(block=BasicBlock, layers=[2, 2, 2, 2], dilation=False),
    # Bottleneck as resnet50/101.
    "bottleneck_2112": dict(block=Bottleneck, layers=[2, 1, 1, 2], dilation=False),
    # DETR's dilated C5 (replace_stride_with_dilation=[False, False, True]): layer4's second block
    # is the first with dilation 2, so layer4 needs two blocks.
    "bottleneck_2112_dilation": dict(block=Bottleneck, layers=[2, 1, 1, 2], dilation=True),
}

# Odd sizes: floor arithmetic in every stride-2 step, a single image and a batch of two.
INPUTS = {"single_97x130": (1, 3, 97, 130), "batch_64x80": (2, 3, 64, 80)}


def randomise_batch_norms(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            with torch.no_grad():
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.2)
                module.running_mean.normal_(0.0, 0.2)
                module.running_var.uniform_(0.5, 2.0)


def build(spec: dict) -> SlimResNet:
    model = SlimResNet(spec["block"], spec["layers"], PLANES_DIVISOR,
                       replace_stride_with_dilation=[False, False, spec["dilation"]])
    randomise_batch_norms(model)
    return model.eval()


def write_case(name: str, spec: dict) -> int:
    torch.manual_seed(sum(map(ord, name)))
    model = build(spec)
    folder = FIXTURES / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    state = {k: v.float().numpy() for k, v in model.state_dict().items() if not k.startswith("fc.")}
    write_safetensors(str(folder / "model.safetensors"), state)

    body = IntermediateLayerGetter(model, {"layer4": "0"})
    for input_name, shape in INPUTS.items():
        pixels = torch.randn(shape)
        with torch.inference_mode():
            c5 = body(pixels)["0"]
        np.save(folder / f"{input_name}.input.npy", pixels.numpy())
        np.save(folder / f"{input_name}.c5.npy", c5.numpy())
        print(f"{name} {input_name}: C5 {tuple(c5.shape)}, max |C5| {c5.abs().max().item():.3g}")

    case = {
        "description": f"torchvision ResNet({spec['block'].__name__}, {spec['layers']}), planes / "
                       f"{PLANES_DIVISOR}, dilation {spec['dilation']}, random weights and BN stats",
        "tolerance": TOLERANCE,
        "block": spec["block"].__name__,
        "layers": spec["layers"],
        "planes": [p // PLANES_DIVISOR for p in (64, 128, 256, 512)],
        "width_per_group": 64,
        "dilation": spec["dilation"],
        "inputs": list(INPUTS),
    }
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return sum(p.stat().st_size for p in folder.iterdir())


def main() -> None:
    torch.set_num_threads(1)  # bit-identical reruns
    total = sum(write_case(name, spec) for name, spec in CASES.items())
    print(f"wrote {FIXTURES}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
