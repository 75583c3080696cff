#include "vitscope/image/resnet.hpp"

#include <map>
#include <set>
#include <utility>

#include "conv2d.hpp"
#include "vitscope/error.hpp"
#include "vitscope/nn/state_dict.hpp"

namespace vitscope::image {

ResNetOptions ResNetOptions::named(const std::string& arch) {
  ResNetOptions options;
  if (arch == "resnet18") {
    options.block = ResNetBlock::BasicBlock;
    options.layers = {2, 2, 2, 2};
  } else if (arch == "resnet34") {
    options.block = ResNetBlock::BasicBlock;
    options.layers = {3, 4, 6, 3};
  } else if (arch == "resnet50") {
    options.layers = {3, 4, 6, 3};
  } else if (arch == "resnet101") {
    options.layers = {3, 4, 23, 3};
  } else {
    throw Error("invalid_argument", "unknown ResNet \"" + arch +
                                        "\" (resnet18, resnet34, resnet50 or resnet101)");
  }
  return options;
}

namespace {

std::size_t expansion(ResNetBlock block) { return block == ResNetBlock::Bottleneck ? 4 : 1; }

// One conv + bn pair as the file names them, with the conv's shape and arithmetic.
struct ConvSlot {
  std::string conv, bn;  // "layer1.0.conv1", "layer1.0.bn1"
  FoldedConv2d* target;
  FoldedConv2d shape;  // no weights yet
};

FoldedConv2d conv_shape(std::size_t in, std::size_t out, std::size_t k, std::size_t stride,
                        std::size_t dilation) {
  // torchvision's conv1x1 (padding 0), conv3x3 (padding = dilation) and the 7x7 stem (padding 3).
  const std::size_t padding = k == 7 ? 3 : k == 3 ? dilation : 0;
  return FoldedConv2d{in, out, k, stride, padding, dilation, {}, {}};
}

// ResNet.__init__ and _make_layer: every block's convs in state_dict order, and their shapes.
std::vector<ConvSlot> build(ResNet& net) {
  const ResNetOptions& o = net.options;
  std::vector<ConvSlot> slots{{"conv1", "bn1", &net.conv1, conv_shape(3, 64, 7, 2, 1)}};
  std::size_t inplanes = 64, dilation = 1;
  for (std::size_t stage = 0; stage < 4; ++stage) {
    std::size_t stride = stage == 0 ? 1 : 2;
    const std::size_t previous_dilation = dilation;
    if (stage == 3 && o.dilation) {  // replace_stride_with_dilation[2]
      dilation *= stride;
      stride = 1;
    }
    const std::size_t planes = o.planes[stage], out = planes * expansion(o.block);
    net.layer[stage].resize(o.layers[stage]);
    for (std::size_t i = 0; i < o.layers[stage]; ++i) {
      ResNetBlockConvs& block = net.layer[stage][i];
      const std::string name = "layer" + std::to_string(stage + 1) + "." + std::to_string(i) + ".";
      // The first block strides (and keeps the previous dilation); the rest keep the shape.
      const std::size_t s = i == 0 ? stride : 1, d = i == 0 ? previous_dilation : dilation;
      if (o.block == ResNetBlock::BasicBlock) {
        slots.push_back({name + "conv1", name + "bn1", &block.conv1, conv_shape(inplanes, planes, 3, s, 1)});
        slots.push_back({name + "conv2", name + "bn2", &block.conv2, conv_shape(planes, planes, 3, 1, 1)});
      } else {
        const std::size_t width = planes * o.width_per_group / 64;
        block.conv3.emplace();
        slots.push_back({name + "conv1", name + "bn1", &block.conv1, conv_shape(inplanes, width, 1, 1, 1)});
        slots.push_back({name + "conv2", name + "bn2", &block.conv2, conv_shape(width, width, 3, s, d)});
        slots.push_back({name + "conv3", name + "bn3", &*block.conv3, conv_shape(width, out, 1, 1, 1)});
      }
      if (i == 0 && (s != 1 || inplanes != out)) {
        block.downsample.emplace();
        slots.push_back({name + "downsample.0", name + "downsample.1", &*block.downsample,
                         conv_shape(inplanes, out, 1, s, 1)});
      }
      inplanes = out;
    }
  }
  return slots;
}

// The raw tensors of one slot while loading: conv weight, bn weight, bias, running stats.
struct SlotTensors {
  std::vector<float> weight, gamma, beta, mean, var;
};

// x (B,H,W,inplanes) -> (B,H',W',out): the block's convs, plus the identity or downsample, ReLU.
conv::ChannelsLast block_forward(const conv::ChannelsLast& x, const ResNetBlockConvs& block) {
  // conv1 -> bn1 -> relu -> conv2 -> bn2 [-> relu -> conv3 -> bn3]
  conv::ChannelsLast out = conv::conv2d(x, block.conv1, true);
  out = conv::conv2d(out, block.conv2, block.conv3.has_value());
  if (block.conv3) out = conv::conv2d(out, *block.conv3, false);
  // out += identity; relu
  if (block.downsample) {
    conv::add_relu(out, conv::conv2d(x, *block.downsample, false));
  } else {
    conv::add_relu(out, x);
  }
  return out;
}

}  // namespace

std::size_t ResNet::out_channels() const { return options.planes[3] * expansion(options.block); }

Tensor4 ResNet::forward(const Tensor4& pixels) const {
  if (pixels.shape(1) != 3) {
    throw Error("shape_mismatch", "ResNet: pixels " +
                                      shape_to_string(Shape(pixels.shape().begin(), pixels.shape().end())) +
                                      " are not (B, 3, H, W)");
  }
  // (B,3,H,W) -> (B,H,W,3): every step below reads pixels as GEMM rows.
  conv::ChannelsLast x = conv::to_channels_last(pixels);
  // Stem: conv1 -> bn1 -> relu -> maxpool: (B,H/2,W/2,64) -> (B,H/4,W/4,64).
  x = conv::max_pool_3x3_s2(conv::conv2d(x, conv1, true));
  // layer1..layer4: (B,H/4,W/4,·) -> (B,H/32,W/32,out_channels()) (H/16 with dilation).
  for (const std::vector<ResNetBlockConvs>& stage : layer) {
    for (const ResNetBlockConvs& block : stage) x = block_forward(x, block);
  }
  return conv::to_channels_first(x);
}

ResNet load_resnet(const std::vector<NamedTensor>& tensors, const ResNetOptions& options,
                   const std::string& prefix, const std::string& source) {
  ResNet net;
  net.options = options;
  const std::vector<ConvSlot> slots = build(net);

  // Bind every slot's tensors as Parameters under their state_dict names.
  std::vector<SlotTensors> raw(slots.size());
  std::vector<Parameter> parameters;
  std::set<std::string> batch_norms;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const FoldedConv2d& s = slots[i].shape;
    SlotTensors& t = raw[i];
    t.weight.resize(s.out_channels * s.in_channels * s.kernel_size * s.kernel_size);
    for (std::vector<float>* v : {&t.gamma, &t.beta, &t.mean, &t.var}) v->resize(s.out_channels);
    const std::string conv = prefix + slots[i].conv, bn = prefix + slots[i].bn;
    batch_norms.insert(bn);
    parameters.push_back({conv + ".weight", {s.out_channels, s.in_channels, s.kernel_size, s.kernel_size},
                          t.weight.data()});
    parameters.push_back({bn + ".weight", {s.out_channels}, t.gamma.data()});
    parameters.push_back({bn + ".bias", {s.out_channels}, t.beta.data()});
    parameters.push_back({bn + ".running_mean", {s.out_channels}, t.mean.data()});
    parameters.push_back({bn + ".running_var", {s.out_channels}, t.var.data()});
  }

  // The tensors under the prefix, but a bn's num_batches_tracked (a training counter).
  std::vector<NamedTensor> owned;
  for (const NamedTensor& t : tensors) {
    if (t.name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string counter = ".num_batches_tracked";
    if (t.name.size() > counter.size() &&
        t.name.compare(t.name.size() - counter.size(), counter.size(), counter) == 0 &&
        batch_norms.count(t.name.substr(0, t.name.size() - counter.size()))) {
      continue;
    }
    owned.push_back(t);
  }
  load_state_dict(parameters, owned, source);

  for (std::size_t i = 0; i < slots.size(); ++i) {
    const SlotTensors& t = raw[i];
    *slots[i].target = conv::fold_batch_norm(t.weight, t.gamma, t.beta, t.mean, t.var, slots[i].shape);
  }
  return net;
}

}  // namespace vitscope::image
