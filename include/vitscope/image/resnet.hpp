#pragma once
// torchvision's ResNet up to layer4, the backbone DETR runs (IntermediateLayerGetter(model,
// {"layer4": "0"})), for inference only: every BatchNorm (BatchNorm2d in eval, or DETR's
// FrozenBatchNorm2d: both are a fixed per-channel affine) is folded into the convolution before
// it at load, so a forward pass is convolutions, ReLUs, one max pool and the residual adds.

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::image {

enum class ResNetBlock { BasicBlock, Bottleneck };

// torchvision.models.resnet.ResNet's constructor arguments (groups is always 1).
struct ResNetOptions {
  ResNetBlock block = ResNetBlock::Bottleneck;
  std::array<std::size_t, 4> layers = {3, 4, 6, 3};         // blocks in layer1..layer4
  std::array<std::size_t, 4> planes = {64, 128, 256, 512};  // _make_layer's planes per stage
  std::size_t width_per_group = 64;  // Bottleneck's inner width = planes * width_per_group / 64
  // DETR's Backbone(dilation=True): replace_stride_with_dilation=[False, False, True], so layer4
  // keeps stride 1 and dilates its 3x3 convolutions instead: C5 at H/16 rather than H/32.
  bool dilation = false;

  // torchvision's resnet18, resnet34 (BasicBlock), resnet50, resnet101 (Bottleneck). Throws
  // vitscope::Error("invalid_argument") for any other name.
  static ResNetOptions named(const std::string& arch);
};

// A Conv2d (bias=False) with the BatchNorm2d that follows it folded in.
struct FoldedConv2d {
  std::size_t in_channels = 0, out_channels = 0;
  std::size_t kernel_size = 1, stride = 1, padding = 0, dilation = 1;
  // (out_channels, kernel_size, kernel_size, in_channels): conv weight * bn scale, laid out as
  // one GEMM row per output channel over a channels-last window.
  std::vector<float> weight;
  std::vector<float> bias;  // (out_channels): bn bias - running_mean * bn scale
};

// BasicBlock (conv1, conv2) or Bottleneck (conv1 1x1, conv2 3x3 with the stride, conv3 1x1),
// each conv with its bn; downsample = (1x1 conv, bn) when the shape changes.
struct ResNetBlockConvs {
  FoldedConv2d conv1, conv2;
  std::optional<FoldedConv2d> conv3;       // Bottleneck only
  std::optional<FoldedConv2d> downsample;  // downsample.0 + downsample.1
};

struct ResNet {
  ResNetOptions options;
  FoldedConv2d conv1;                                 // conv1 (7x7, stride 2, padding 3) + bn1
  std::array<std::vector<ResNetBlockConvs>, 4> layer;  // layer1..layer4

  // Channels of C5: planes[3] * expansion (1 for BasicBlock, 4 for Bottleneck).
  std::size_t out_channels() const;

  // pixels (B,3,H,W), any H and W -> C5 (B,out_channels(),h,w): conv1 and maxpool each halve
  // (floor((H + 2p - d(k-1) - 1)/s) + 1, as PyTorch), then layer2..layer4 halve again
  // (layer4 not with dilation): h ~ H/32, or H/16 with dilation.
  Tensor4 forward(const Tensor4& pixels) const;
};

// Binds tensors named prefix + torchvision's state_dict key (conv1.weight, bn1.running_var,
// layer1.0.downsample.0.weight, ...; prefix "backbone.0.body." for a DETR checkpoint) and folds
// each bn into its conv, as load_state_dict(strict=True) over the tensors under the prefix:
// vitscope::Error("state_dict_mismatch") names every missing, unexpected and wrong-shape tensor.
// Tensors outside the prefix are ignored; <bn>.num_batches_tracked is accepted and unused, as
// FrozenBatchNorm2d drops it. `source` names the file in messages.
ResNet load_resnet(const std::vector<NamedTensor>& tensors, const ResNetOptions& options,
                   const std::string& prefix, const std::string& source);

}  // namespace vitscope::image
