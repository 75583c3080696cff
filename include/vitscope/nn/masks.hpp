#pragma once
// Attention masks as PyTorch takes them. A float mask is added to the attention scores; a bool
// mask marks with true the positions that may NOT be attended (they become -inf). vitscope keeps
// every mask in its additive float form, so the two kinds combine by addition.
//
// A query row whose keys are all masked has no defined softmax (PyTorch 1.13's reference path
// returns NaN there, its fused kernels return zeros). vitscope defines it as zeros: that row's
// attention weights are all 0, so its attention output is the out_proj bias alone.

#include <cstdint>
#include <string>
#include <vector>

#include "vitscope/nn/tensor.hpp"

namespace vitscope::nn {

// attn_mask: (L,S) for all batches and heads, or (N*nhead,L,S); an empty tensor means none.
using AttnMask = Tensor3;  // a 2-D mask is held as (1,L,S)
// key_padding_mask: (N,S); an empty tensor means none.
using KeyPaddingMask = Tensor2;

// Bool mask (true = masked) given as 0/1 floats -> additive mask (0 or -inf).
Tensor3 additive_from_bool(const Tensor3& bool_mask);
Tensor2 additive_from_bool(const Tensor2& bool_mask);

// Float (L,S) mask -> the (1,L,S) form AttnMask uses.
AttnMask attn_mask_2d(const Tensor2& mask);

// A mask given as row-major values of some shape (as a .npy file holds it): float (added) or
// bool (1 = masked). Throws vitscope::Error("bad_input"), starting with `name`, for a wrong rank.
// attn_mask: rank 2 (L,S) or 3 (N*nhead,L,S).
AttnMask to_attn_mask(const Shape& shape, const std::vector<float>& values, bool is_bool,
                      const std::string& name);
// key_padding_mask: rank 2 (N,S).
KeyPaddingMask to_key_padding_mask(const Shape& shape, const std::vector<float>& values,
                                   bool is_bool, const std::string& name);

// torch.nn.Transformer.generate_square_subsequent_mask: (sz,sz), -inf above the diagonal, 0 elsewhere.
Tensor2 generate_square_subsequent_mask(int64_t sz);

}  // namespace vitscope::nn
