#include "pneumo/infer/export.h"

#include <algorithm>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/script.h>
#include <torch/torch.h>

#include "pneumo/core/build_info.h"
#include "pneumo/core/config_node.h"
#include "pneumo/core/config_schema.h"
#include "pneumo/core/error.h"
#include "pneumo/core/file_io.h"
#include "pneumo/models/network.h"

namespace pneumo::infer {

namespace fs = std::filesystem;

namespace {

// The script module holding `network`'s parameters and buffers under the same dotted names,
// as a tree of submodules (so its state_dict matches pneumo's checkpoints). The tensors are
// shared, which is how the tracer knows them as attributes rather than constants.
torch::jit::Module mirror(const models::Network& network, const std::shared_ptr<torch::jit::CompilationUnit>& cu) {
  torch::jit::Module root(c10::QualifiedName("__torch__.pneumo.Network"), cu, true);
  const auto child = [&](torch::jit::Module parent, const std::string& name) {
    if (parent.hasattr(name)) return parent.attr(name).toModule();
    torch::jit::Module m(c10::QualifiedName("__torch__.pneumo.Module"), cu, true);
    parent.register_module(name, m);
    return m;
  };
  const auto add = [&](const std::string& dotted, const torch::Tensor& tensor, bool is_buffer) {
    torch::jit::Module node = root;
    size_t begin = 0;
    for (size_t dot = dotted.find('.'); dot != std::string::npos; dot = dotted.find('.', begin)) {
      node = child(node, dotted.substr(begin, dot - begin));
      begin = dot + 1;
    }
    node.register_parameter(dotted.substr(begin), tensor, is_buffer);
  };
  for (const auto& p : network.named_parameters()) add(p.key(), p.value(), false);
  for (const auto& b : network.named_buffers()) add(b.key(), b.value(), true);
  return root;
}

nlohmann::ordered_json metadata(const std::vector<Member>& members, const PostprocessSection& post,
                                const std::optional<Calibration>& calibration) {
  const data::DataSection& d = members.front().config.data;
  nlohmann::ordered_json j;
  j["format"] = "pneumo-torchscript";
  j["version"] = 1;
  j["pneumo"] = PNEUMO_VERSION;
  j["input"] = {{"shape", {"N", 1, d.size, d.size}},
                {"dtype", "float32"},
                {"range", "grey pixel values 0..255 (MONOCHROME2: air dark)"},
                {"size", d.size},
                {"interpolation", d.interpolation},
                {"dicom_window", d.window}};
  j["outputs"] = {"mask: [N, 1, S, S] pneumothorax probability per pixel",
                  "probability: [N] image-level pneumothorax probability"};
  j["class_names"] = {"pneumothorax"};
  bool classifier = false, aux = false;
  for (const Member& m : members) {
    classifier = classifier || !m.segmenter;
    aux = aux || (m.segmenter && m.config.model.aux_head);
  }
  j["image_probability"] = classifier ? "classifiers" : aux ? "auxiliary heads" : "most confident pixel";
  j["postprocess"] = {{"threshold", post.threshold},
                      {"top_threshold", post.top_threshold},
                      {"min_area", post.min_area},
                      {"min_component_area", post.min_component_area},
                      {"classifier_threshold", post.classifier_threshold}};
  // The output `probability` is the raw score; a reader calibrates it with this (calibration.h).
  j["calibration"] = calibration ? nlohmann::ordered_json::parse(calibration_to_json(*calibration))
                                 : nlohmann::ordered_json();
  // The input gate of the first member, as the `gate:` section's YAML (load_exported reads it back).
  j["gate"] = core::to_yaml(core::write_section(members.front().config.gate));
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Member& m : members)
    list.push_back({{"checkpoint", m.checkpoint.filename().string()},
                    {"model", m.config.model.name},
                    {"encoder", m.config.model.encoder.name},
                    {"segmenter", m.segmenter},
                    {"weight", m.weight},
                    {"channels", m.config.data.channels},
                    {"mean", m.config.data.mean},
                    {"std", m.config.data.std}});
  j["members"] = list;
  return j;
}

// Grey values [N, 1, S, S] 0..255 -> the member's input, normalised as its loader does it (in
// float32: pixel * (1/255/std) + (-mean/std)), the grey channel repeated for 3-channel members.
torch::Tensor normalised(const torch::Tensor& x, const data::DataSection& d) {
  std::vector<torch::Tensor> channels;
  for (int c = 0; c < d.channels; ++c) {
    const double mean = d.mean.size() == 1 ? d.mean[0] : d.mean[static_cast<size_t>(c)];
    const double std = d.std.size() == 1 ? d.std[0] : d.std[static_cast<size_t>(c)];
    channels.push_back(x * static_cast<float>(1.0 / 255.0 / std) + static_cast<float>(-mean / std));
  }
  return channels.size() == 1 ? channels.front() : torch::cat(channels, 1);
}

// An exported file has one input: its members take images of one size and interpolation.
void check_exportable(const std::vector<Member>& members) {
  for (const Member& m : members) {
    if (m.script)
      throw core::UsageError(fmt::format("{} is already an exported file; export from checkpoints or run folders",
                                         m.checkpoint.string()));
    if (!m.segmenter && !m.classes.empty() &&
        std::find(m.classes.begin(), m.classes.end(), "Pneumothorax") == m.classes.end())
      throw core::UsageError(fmt::format("{} classifies {} without Pneumothorax; an exported file carries the "
                                         "pneumothorax probability (fine-tune a pneumothorax head first: "
                                         "configs/chexnet-finetune-siim.yaml)",
                                         m.checkpoint.string(), fmt::join(m.classes, ", ")));
  }
  const data::DataSection& first = members.front().config.data;
  for (const Member& m : members)
    if (m.config.data.size != first.size || m.config.data.interpolation != first.interpolation)
      throw core::UsageError(fmt::format(
          "{} takes {} px images resized with {}, {} takes {} px with {}; an exported ensemble has one input",
          members.front().checkpoint.string(), first.size, first.interpolation, m.checkpoint.string(),
          m.config.data.size, m.config.data.interpolation));
}

}  // namespace

ExportSummary export_torchscript(const ExportOptions& options) {
  if (options.out.empty()) throw core::UsageError("no output file; expected --out FILE.pt");
  const c10::Device cpu(c10::kCPU);
  std::vector<Member> members = load_members(options.models, options.members, options.overrides, cpu);
  check_exportable(members);
  const data::DataSection& first = members.front().config.data;
  const PostprocessSection post = resolve_postprocess(members, options.postprocess);
  const std::optional<Calibration> calibration = resolve_calibration(members, options);

  // A deployed model does not train: no autograd bookkeeping in the file's outputs.
  for (Member& m : members)
    for (auto& p : m.network->parameters()) p.set_requires_grad(false);
  auto cu = std::make_shared<torch::jit::CompilationUnit>();
  torch::jit::Module root(c10::QualifiedName("__torch__.pneumo.Export"), cu, true);
  for (size_t k = 0; k < members.size(); ++k) root.register_module(fmt::format("member{}", k), mirror(*members[k].network, cu));

  double segment_weight = 0, gate_weight = 0, aux_weight = 0;  // image-level outputs show in the forward
  for (const Member& m : members)
    if (m.segmenter) segment_weight += m.weight;
  // The traced function: normalise per member, run, average.
  const auto forward = [&](torch::jit::Stack inputs) -> torch::jit::Stack {
    const torch::Tensor x = inputs.at(0).toTensor();
    torch::Tensor mask, gate, aux;
    gate_weight = aux_weight = 0;
    for (const Member& m : members) {
      const models::ModelOutput out = m.network->forward(normalised(x, m.config.data));
      if (m.segmenter) {
        const torch::Tensor p = torch::sigmoid(out.masks.narrow(1, 0, 1)) * m.weight;
        mask = mask.defined() ? mask + p : p;
      }
      const torch::Tensor logit = pneumothorax_logit(m, out);
      if (logit.defined()) {
        const torch::Tensor p = torch::sigmoid(logit) * m.weight;
        torch::Tensor& sum = m.segmenter ? aux : gate;
        sum = sum.defined() ? sum + p : p;
        (m.segmenter ? aux_weight : gate_weight) += m.weight;
      }
    }
    if (mask.defined()) mask = mask / segment_weight;
    torch::Tensor probability;
    if (gate.defined())
      probability = gate / gate_weight;
    else if (aux.defined())
      probability = aux / aux_weight;
    else
      probability = mask.flatten(1).amax(1);
    if (!mask.defined()) mask = x.narrow(2, 0, 0).narrow(3, 0, 0);  // [N, 1, 0, 0], N traced from the input
    return {c10::ivalue::Tuple::create({mask, probability})};
  };
  torch::NoGradGuard no_grad;
  const torch::Tensor example = torch::rand({1, 1, first.size, first.size}) * 255;
  auto traced = torch::jit::tracer::trace(
      {example}, forward, [](const torch::autograd::Variable&) { return std::string(); }, /*strict=*/false,
      /*force_outplace=*/false, &root);
  const std::shared_ptr<torch::jit::Graph> graph = traced.first->graph;
  torch::jit::Function* method =
      cu->create_function(c10::QualifiedName(*root.type()->name(), "forward"), graph);
  root.type()->addMethod(method);

  ExportSummary summary;
  summary.members = static_cast<int>(members.size());
  summary.input_size = first.size;
  summary.metadata = metadata(members, post, calibration).dump(2);
  std::ostringstream bytes;
  root.save(bytes, {{"pneumo.json", summary.metadata}});
  core::write_file_atomic(options.out, bytes.str());
  return summary;
}

}  // namespace pneumo::infer
