#pragma once
// Channels-last convolution steps for the ResNet backbone (private to the library): a folded
// Conv2d as one GEMM over im2col rows (none needed for 1x1 stride 1), the max pool, the residual.

#include <vector>

#include "vitscope/image/resnet.hpp"

namespace vitscope::image::conv {

// A (B,H,W,C) activation: pixel (b, y, x) is C contiguous floats, one GEMM row.
struct ChannelsLast {
  std::vector<float> data;
  std::size_t B = 0, H = 0, W = 0, C = 0;
};

ChannelsLast to_channels_last(const Tensor4& x);  // (B,C,H,W) -> (B,H,W,C)
Tensor4 to_channels_first(const ChannelsLast& x);  // (B,H,W,C) -> (B,C,H,W)

// PyTorch's output size: floor((size + 2 padding - dilation (kernel - 1) - 1) / stride) + 1.
std::size_t output_size(std::size_t size, std::size_t kernel, std::size_t stride,
                        std::size_t padding, std::size_t dilation);

// (weight (O,C,k,k), bn weight/bias/running_mean/running_var (O)) -> the folded conv, with
// FrozenBatchNorm2d's arithmetic: scale = weight * (running_var + eps).rsqrt().
FoldedConv2d fold_batch_norm(const std::vector<float>& conv_weight, const std::vector<float>& gamma,
                             const std::vector<float>& beta, const std::vector<float>& mean,
                             const std::vector<float>& var, FoldedConv2d shape);

// x (B,H,W,in) -> (B,Ho,Wo,out) = conv(x) + bias, then ReLU when relu is set.
ChannelsLast conv2d(const ChannelsLast& x, const FoldedConv2d& conv, bool relu);

// MaxPool2d(kernel_size=3, stride=2, padding=1): (B,H,W,C) -> (B,Ho,Wo,C); padding is -inf.
ChannelsLast max_pool_3x3_s2(const ChannelsLast& x);

// out = relu(out + identity), in place; both (B,H,W,C).
void add_relu(ChannelsLast& out, const ChannelsLast& identity);

}  // namespace vitscope::image::conv
