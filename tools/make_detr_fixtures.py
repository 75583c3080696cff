#!/usr/bin/env python3
"""Regenerates tests/fixtures/detr/<case>/: DETRs built from the published structure
(tools/detr_model.py) with random weights, imported by tools/import_model.py --family detr, and
what PyTorch computes on two real photos of different sizes batched together.

Usage (Debian's python3-torch and python3-torchvision only import from the system interpreter):
    /usr/bin/python3 tools/make_detr_fixtures.py
    /usr/bin/python3 tools/make_detr_fixtures.py --full-resnet50 DIR   # DETR-R50 at full width (166 MB),
        # not committed: VITSCOPE_DETR_FIXTURES=DIR build/tests/vitscope_tests "[detr]" runs the same test on it

Each case folder holds model.safetensors (the imported file) and, for the batch of case.json's
images (assets/images/, preprocessed by tools/reference_model.py's preprocess with the file's own
shorter-max sizes, padded to the backbone's stride and to each other, as vitscope batches them):
    logits.npy (B,Q,K+1), boxes.npy (B,Q,4), memory.npy (B,E,h,w) (the encoder output as a feature map),
    cross.<N>.npy (B,nh,Q,h*w) decoder layer N's cross-attention per head.
PyTorch gets the same padded batch and pixel mask: DETR is not padding-invariant (its convolutions see
the padding), so both sides must pad alike.
Full-width ResNets are 100 MB and more, so the committed cases divide every stage's planes by 8
(detr_model.SlimResNet; resnet50's blocks 3,4,6,3 and its arithmetic are kept).
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import detr_model  # noqa: E402
import import_model  # noqa: E402
from reference_model import IMAGENET_MEAN, IMAGENET_STD, load_image, preprocess  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "detr"
IMAGES = ["chelsea.jpg", "coffee.jpg"]
TOLERANCE = 1e-4

CASES = {
    # resnet50's structure (Bottleneck 3,4,6,3) at 1/8 width, DETR's post-norm transformer.
    "r50_slim_postnorm": dict(block="Bottleneck", layers=[3, 4, 6, 3], divisor=8, dilation=False, hidden_dim=64,
                              nheads=8, enc_layers=2, dec_layers=2, dim_feedforward=128, num_queries=12,
                              num_classes=5, pre_norm=False, image_size=320, max_size=480),
    # DETR's dilated C5 (stride 16) with pre-norm (an encoder norm).
    "dc5_slim_prenorm": dict(block="Bottleneck", layers=[1, 1, 1, 2], divisor=8, dilation=True, hidden_dim=32,
                             nheads=4, enc_layers=1, dec_layers=2, dim_feedforward=64, num_queries=6,
                             num_classes=3, pre_norm=True, image_size=224, max_size=320),
}
FULL_RESNET50 = dict(resnet="resnet50", dilation=False, hidden_dim=256, nheads=8, enc_layers=6, dec_layers=6,
                     dim_feedforward=2048, num_queries=100, num_classes=91, pre_norm=False, image_size=800,
                     max_size=1333)


def randomise_frozen_batch_norms(model: torch.nn.Module) -> None:
    """Random affine parameters and running statistics, so that folding them is tested."""
    for module in model.modules():
        if isinstance(module, detr_model.FrozenBatchNorm2d):
            module.weight.uniform_(0.5, 1.0)
            module.bias.normal_(0.0, 0.2)
            module.running_mean.normal_(0.0, 0.2)
            module.running_var.uniform_(0.5, 2.0)


def build(spec: dict) -> detr_model.DETR:
    if "resnet" in spec:
        backbone = detr_model.torchvision_resnet(spec["resnet"], spec["dilation"])
    else:
        backbone = detr_model.slim_resnet(spec["block"], spec["layers"], spec["divisor"], spec["dilation"])
    model = detr_model.build_detr(spec["num_classes"], backbone, spec["hidden_dim"], spec["nheads"],
                                  spec["enc_layers"], spec["dec_layers"], spec["dim_feedforward"],
                                  spec["num_queries"])
    with torch.no_grad():
        randomise_frozen_batch_norms(model)
    return model.eval()


def write_case(folder: Path, spec: dict, seed: int) -> None:
    torch.manual_seed(seed)
    model = build(spec)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    checkpoint = folder / "detr.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    stride = 16 if spec["dilation"] else 32
    options = import_model.options(nhead=spec["nheads"], dilation=spec["dilation"], image_size=spec["image_size"],
                                   max_size=spec["max_size"])
    import_model.import_model(str(checkpoint), "detr", str(folder / "model.safetensors"), options)
    checkpoint.unlink()

    images = [load_image(str(ROOT / "assets" / "images" / name)) for name in IMAGES]
    pixels, pixel_mask = preprocess(images, stride, spec["image_size"], IMAGENET_MEAN, IMAGENET_STD,
                                    resize_mode="shorter-max", max_size=spec["max_size"])
    cross = detr_model.capture_cross_attention(model)
    memory = {}
    model.transformer.encoder.register_forward_hook(lambda module, inputs, output: memory.update(out=output))
    with torch.inference_mode():
        out = model(pixels, pixel_mask)
    h, w = pixels.shape[2] // stride, pixels.shape[3] // stride
    np.save(folder / "logits.npy", out["pred_logits"].numpy())
    np.save(folder / "boxes.npy", out["pred_boxes"].numpy())
    np.save(folder / "memory.npy", memory["out"].permute(1, 2, 0).reshape(len(images), -1, h, w).numpy())
    for n, weights in enumerate(cross):
        np.save(folder / f"cross.{n}.npy", weights.numpy())
    case = {"description": {k: v for k, v in spec.items()}, "tolerance": TOLERANCE, "images": IMAGES,
            "pixels": list(pixels.shape), "decoder_layers": len(cross)}
    (folder / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"{folder.name}: pixels {tuple(pixels.shape)}, tokens {h}x{w}, max |logit| "
          f"{out['pred_logits'].abs().max().item():.3g}, {size / 1e6:.2f} MB")


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full-resnet50", metavar="DIR", help="write the full-width DETR-R50 case to DIR instead")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # bit-identical reruns
    if args.full_resnet50:
        write_case(Path(args.full_resnet50) / "detr_r50_full", FULL_RESNET50, seed=50)
        return 0
    for name, spec in CASES.items():
        write_case(FIXTURES / name, spec, seed=sum(map(ord, name)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
