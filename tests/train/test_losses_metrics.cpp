// Losses and metrics against the seeds' formulas run in Python (reference_losses.py), scikit-learn,
// and hand-computed cases.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include <torch/torch.h>

#include "pneumo/core/error.h"
#include "pneumo/models/weights.h"
#include "pneumo/train/losses.h"
#include "pneumo/train/metrics.h"
#include "pneumo_test_paths.h"
#include "python_reference.h"
#include "test_support.h"

using namespace pneumo;

namespace {

std::map<std::string, torch::Tensor> reference() {
  static const auto values = pneumo::testing::python_reference("tests/train/reference_losses.py");
  return values;
}

double value(const torch::Tensor& t) { return t.item<double>(); }

}  // namespace

TEST_CASE("segmentation losses equal the seeds' formulas") {
  auto ref = reference();
  const torch::Tensor& x = ref["logits"];
  const torch::Tensor& t = ref["targets"];
  CHECK(value(train::bce_loss(x, t)) == Approx(value(ref["bce"])).epsilon(1e-12));
  CHECK(value(train::bce_loss(x, t)) == Approx(value(ref["bce_stable"])).epsilon(1e-12));
  CHECK(value(train::bce_loss(x, t, 3.0)) == Approx(value(ref["bce_pos_weight"])).epsilon(1e-12));
  CHECK(value(train::soft_dice_loss(x, t, false, 1.0)) == Approx(value(ref["dice_keras"])).epsilon(1e-12));
  CHECK(value(train::soft_dice_loss(x, t, false, 1e-5)) == Approx(value(ref["dice_winner"])).epsilon(1e-12));
  CHECK(value(train::soft_dice_loss(x, t, true, 1e-5)) == Approx(value(ref["dice_winner_per_image"])).epsilon(1e-12));
  CHECK(value(train::focal_loss(x, t)) == Approx(value(ref["focal"])).epsilon(1e-12));
  CHECK(value(train::weighted_bce_dice_loss(x, t)) == Approx(value(ref["weighted_bce_dice"])).epsilon(1e-10));
  // Berman's code builds the Lovasz gradient in float32; pneumo in the logits' precision.
  CHECK(value(train::lovasz_hinge_loss(x, t, true)) == Approx(value(ref["lovasz_per_image"])).epsilon(1e-7));
  CHECK(value(train::lovasz_hinge_loss(x, t, false)) == Approx(value(ref["lovasz_batch"])).epsilon(1e-7));

  train::ComboLossOptions winner;  // ComboLoss({'bce': 3, 'dice': 1, 'focal': 4})
  winner.bce = 3;
  winner.dice = 1;
  winner.focal = 4;
  winner.dice_smooth = 1e-5;
  CHECK(value(train::combo_loss(x, t, winner)) ==
        Approx(3 * value(ref["bce_stable"]) + value(ref["dice_winner"]) + 4 * value(ref["focal"])).epsilon(1e-12));
  const train::ComboLossOptions seeds;  // bce_dice_loss
  CHECK(value(train::combo_loss(x, t, seeds)) == Approx(value(ref["bce"]) + value(ref["dice_keras"])).epsilon(1e-12));
  CHECK(value(train::deep_supervision_loss(x, {x, x}, t, seeds, {0.5, 0.25})) ==
        Approx(1.75 * value(train::combo_loss(x, t, seeds))).epsilon(1e-12));
}

TEST_CASE("classification loss smooths labels and weighs classes like PyTorch") {
  auto ref = reference();
  CHECK(value(train::classification_loss(ref["cls_logits"], ref["cls_targets"], 0.1, {1.0, 2.0, 0.5})) ==
        Approx(value(ref["cls_loss"])).epsilon(1e-12));
  CHECK_THROWS_AS(train::classification_loss(ref["cls_logits"], ref["cls_targets"], 0.0, {1.0}), core::ConfigError);
  CHECK_THROWS_AS(train::bce_loss(torch::zeros({2, 1, 4, 4}), torch::zeros({2, 1, 4, 5})), core::ModelError);
}

TEST_CASE("losses are small for perfect predictions and give gradients") {
  torch::Tensor t = torch::zeros({2, 1, 8, 8});
  t.index_put_({0, 0, torch::indexing::Slice(2, 6), torch::indexing::Slice(2, 6)}, 1);
  const torch::Tensor perfect = (t * 2 - 1) * 20;
  CHECK(value(train::soft_dice_loss(perfect, t, true, 1.0)) < 1e-6);
  CHECK(value(train::lovasz_hinge_loss(perfect, t, true)) == 0.0);
  torch::Tensor x = torch::zeros({2, 1, 8, 8}, torch::requires_grad());
  train::ComboLossOptions all;
  all.focal = 1;
  all.lovasz = 1;
  all.weighted_bce_dice = 1;
  train::combo_loss(x, t, all).backward();
  CHECK(x.grad().abs().sum().item<double>() > 0);
}

TEST_CASE("the Kaggle metric, IoU and the TGS IoU match numpy and MONAI, empty-empty counting 1") {
  auto ref = reference();
  CHECK(torch::allclose(train::kaggle_dice(ref["pred_masks"], ref["true_masks"]), ref["kaggle_dice"]));
  CHECK(torch::allclose(train::kaggle_dice(ref["pred_masks"], ref["true_masks"]), ref["monai_dice"]));
  CHECK(torch::allclose(train::iou(ref["pred_masks"], ref["true_masks"]), ref["iou"]));
  CHECK(torch::allclose(train::tgs_iou(ref["pred_masks"], ref["true_masks"]), ref["tgs_iou"]));
  // By hand: both empty 1; one empty 0; 4 of 6 and 4 of 4 pixels: 2*4 / (6 + 4) = 0.8.
  torch::Tensor p = torch::zeros({3, 4, 4}, torch::kUInt8), t = torch::zeros({3, 4, 4}, torch::kUInt8);
  p[1][0][0] = 1;
  p[2].index_put_({torch::indexing::Slice(0, 2), torch::indexing::Slice(0, 3)}, 1);
  t[2].index_put_({torch::indexing::Slice(0, 2), torch::indexing::Slice(0, 2)}, 1);
  const torch::Tensor dice = train::kaggle_dice(p, t);
  CHECK(dice[0].item<double>() == 1.0);
  CHECK(dice[1].item<double>() == 0.0);
  CHECK(dice[2].item<double>() == Approx(0.8));
  CHECK(train::iou(p, t)[2].item<double>() == Approx(4.0 / 6.0));
}

TEST_CASE("classification metrics equal scikit-learn's and MONAI's, ties included") {
  auto ref = reference();
  std::vector<double> scores;
  std::vector<int> labels;
  for (int64_t i = 0; i < ref["scores"].numel(); ++i) {
    scores.push_back(ref["scores"][i].item<double>());
    labels.push_back(static_cast<int>(ref["labels"][i].item<int64_t>()));
  }
  const train::BinaryMetrics m = train::binary_metrics(scores, labels, 0.5);
  const torch::Tensor& sk = ref["sk"];
  CHECK(m.auc == Approx(sk[0].item<double>()).epsilon(1e-12));
  CHECK(m.auc == Approx(ref["monai_auc"].item<double>()).epsilon(1e-12));
  CHECK(m.average_precision == Approx(sk[1].item<double>()).epsilon(1e-12));
  CHECK(m.precision == Approx(sk[2].item<double>()).epsilon(1e-12));
  CHECK(m.recall == Approx(sk[3].item<double>()).epsilon(1e-12));
  CHECK(m.f1 == Approx(sk[4].item<double>()).epsilon(1e-12));
  CHECK(m.specificity == Approx(sk[5].item<double>()).epsilon(1e-12));
  CHECK(m.tp == sk[6].item<double>());
  CHECK(m.fp == sk[7].item<double>());
  CHECK(m.tn == sk[8].item<double>());
  CHECK(m.fn == sk[9].item<double>());
  CHECK(std::isnan(train::binary_metrics({0.1, 0.9}, {1, 1}, 0.5).auc));
  CHECK_THROWS_AS(train::binary_metrics({0.1}, {2}, 0.5), core::ModelError);
}

TEST_CASE("multi-label classification: ignored targets are masked out of the loss and get no gradient") {
  auto ref = reference();
  const torch::Tensor targets = ref["ml_targets"].to(torch::kFloat64);
  torch::Tensor logits = ref["ml_logits"].clone().set_requires_grad(true);
  const torch::Tensor loss = train::classification_loss(logits, targets, 0.0, {1.0, 2.0, 0.5, 3.0});
  CHECK(value(loss) == Approx(value(ref["ml_masked_bce"])).epsilon(1e-12));
  loss.backward();
  const torch::Tensor ignored = targets.isnan();
  REQUIRE(ignored.any().item<bool>());
  CHECK(logits.grad().masked_select(ignored).abs().max().item<double>() == 0.0);  // exactly zero
  CHECK(logits.grad().masked_select(ignored.logical_not()).abs().min().item<double>() > 0.0);
  CHECK(std::isfinite(value(loss)));
  // Every target ignored: a zero loss, not NaN.
  const torch::Tensor none = train::classification_loss(logits, torch::full_like(targets, NAN), 0.0, {});
  CHECK(value(none) == 0.0);
}

TEST_CASE("per-class AUCs and their mean equal scikit-learn's, ignored targets left out") {
  auto ref = reference();
  const torch::Tensor scores = ref["ml_scores"].contiguous(), targets = ref["ml_targets"].to(torch::kFloat32).contiguous();
  const std::vector<double> s(scores.data_ptr<double>(), scores.data_ptr<double>() + scores.numel());
  const std::vector<float> t(targets.data_ptr<float>(), targets.data_ptr<float>() + targets.numel());
  const train::ClassAucs aucs = train::class_aucs(s, t, 4);
  REQUIRE(aucs.per_class.size() == 4);
  for (int c = 0; c < 3; ++c) CHECK(aucs.per_class[c] == Approx(ref["ml_auc"][c].item<double>()).epsilon(1e-12));
  CHECK(std::isnan(aucs.per_class[3]));  // one label only
  CHECK(aucs.mean == Approx(value(ref["ml_mean_auc"])).epsilon(1e-12));
  CHECK_THROWS_AS(train::class_aucs(s, t, 7), core::ModelError);  // 480 values are not rows of 7
}
