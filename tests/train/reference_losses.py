"""Reference values for pneumo's losses and metrics, the Python way: the seeds' loss code
transcribed to PyTorch (Keras bce_dice_loss / weighted_bce_dice_loss, the SIIM winner's
StableBCE, soft_dice_loss and FocalLoss2d, Berman's Lovasz hinge), scikit-learn and MONAI for
the classification metrics, numpy and MONAI's DiceMetric for the Kaggle and TGS metrics.

usage: reference_losses.py OUT_FILE     (a torch.save dict of tensors)
"""
import sys

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import DiceMetric, compute_roc_auc
from sklearn import metrics as skm


def keras_dice_loss(p, t, smooth=1.0):
    p, t = p.reshape(-1), t.reshape(-1)
    return 1 - (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def winner_soft_dice_loss(outputs, targets, per_image=False):
    batch_size = outputs.size()[0]
    eps = 1e-5
    if not per_image:
        batch_size = 1
    dice_target = targets.contiguous().view(batch_size, -1).float()
    dice_output = outputs.contiguous().view(batch_size, -1)
    intersection = torch.sum(dice_output * dice_target, dim=1)
    union = torch.sum(dice_output, dim=1) + torch.sum(dice_target, dim=1) + eps
    return (1 - (2 * intersection + eps) / union).mean()


def winner_focal(outputs, targets, gamma=2):
    eps = 1e-8
    outputs = torch.clamp(outputs.reshape(-1), eps, 1. - eps)
    targets = torch.clamp(targets.reshape(-1), eps, 1. - eps)
    pt = (1 - targets) * (1 - outputs) + targets * outputs
    return (-(1. - pt) ** gamma * torch.log(pt)).mean()


def winner_stable_bce(inp, target):
    neg_abs = -inp.abs()
    return (inp.clamp(min=0) - inp * target + (1 + neg_abs.exp()).log()).mean()


def keras_weighted_bce_dice(y_true, y_pred):
    averaged_mask = F.avg_pool2d(y_true, 11, stride=1, padding=5, count_include_pad=False)
    border = (averaged_mask > 0.005).float() * (averaged_mask < 0.995).float()
    weight = torch.ones_like(averaged_mask)
    w0 = weight.sum()
    weight = weight + border * 2
    w1 = weight.sum()
    weight = weight * (w0 / w1)
    epsilon = 1e-7
    y_pred = y_pred.clamp(epsilon, 1. - epsilon)
    logit_y_pred = torch.log(y_pred / (1. - y_pred))
    bce = ((1. - y_true) * logit_y_pred + (1. + (weight - 1.) * y_true) *
           (torch.log(1. + torch.exp(-logit_y_pred.abs())) + torch.clamp(-logit_y_pred, min=0))).sum() / weight.sum()
    w = weight * weight
    dice = (2. * (w * y_true * y_pred).sum() + 1.) / ((w * y_true).sum() + (w * y_pred).sum() + 1.)
    return bce + (1 - dice)


def lovasz_grad(gt_sorted):
    p = len(gt_sorted)
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.float().cumsum(0)
    union = gts + (1 - gt_sorted).float().cumsum(0)
    jaccard = 1. - intersection / union
    if p > 1:
        jaccard[1:p] = jaccard[1:p] - jaccard[0:-1]
    return jaccard


def lovasz_hinge_flat(logits, labels):
    signs = 2. * labels.float() - 1.
    errors = (1. - logits * signs)
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    grad = lovasz_grad(labels[perm]).to(errors.dtype)  # the original is float32 throughout
    return torch.dot(F.relu(errors_sorted), grad)


def main():
    torch.manual_seed(3)
    logits = torch.randn(3, 1, 24, 20, dtype=torch.float64) * 2
    targets = torch.zeros(3, 1, 24, 20, dtype=torch.float64)
    targets[0, 0, 5:15, 4:12] = 1
    targets[1, 0, 0:3, 0:20] = 1      # image 2 is empty
    probs = torch.sigmoid(logits)
    out = {"logits": logits, "targets": targets}
    out["bce"] = F.binary_cross_entropy_with_logits(logits, targets)
    out["bce_stable"] = winner_stable_bce(logits, targets)
    out["bce_pos_weight"] = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=torch.tensor([3.0], dtype=torch.float64))
    out["dice_keras"] = keras_dice_loss(probs, targets)
    out["dice_winner"] = winner_soft_dice_loss(probs, targets, False)
    out["dice_winner_per_image"] = winner_soft_dice_loss(probs, targets, True)
    out["focal"] = winner_focal(probs, targets)
    out["weighted_bce_dice"] = keras_weighted_bce_dice(targets, probs)
    out["lovasz_per_image"] = torch.stack([lovasz_hinge_flat(logits[i].reshape(-1), targets[i].reshape(-1))
                                           for i in range(3)]).mean()
    out["lovasz_batch"] = lovasz_hinge_flat(logits.reshape(-1), targets.reshape(-1))
    cls_logits = torch.randn(6, 3, dtype=torch.float64)
    cls_targets = (torch.rand(6, 3) > 0.5).double()
    out["cls_logits"], out["cls_targets"] = cls_logits, cls_targets
    smoothed = cls_targets * 0.9 + 0.05
    out["cls_loss"] = F.binary_cross_entropy_with_logits(cls_logits, smoothed,
                                                         pos_weight=torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64))

    # Masks for the Kaggle metric and IoUs: both empty, one empty, overlapping.
    pred = (probs > 0.5).numpy()[:, 0]
    truth = targets.numpy()[:, 0] > 0
    pred[2] = False
    truth[2] = False
    out["pred_masks"] = torch.from_numpy(pred.astype(np.uint8))
    out["true_masks"] = torch.from_numpy(truth.astype(np.uint8))
    dice, ious, tgs = [], [], []
    for p, t in zip(pred, truth):
        s = p.sum() + t.sum()
        dice.append(1.0 if s == 0 else 2 * np.logical_and(p, t).sum() / s)
        u = np.logical_or(p, t).sum()
        ious.append(1.0 if u == 0 else np.logical_and(p, t).sum() / u)
        v = (np.sum(np.logical_and(p, t) > 0) + 1e-10) / (np.sum(np.logical_or(p, t) > 0) + 1e-10)
        tgs.append(np.mean([v > th for th in np.arange(0.5, 1, 0.05)]))
    out["kaggle_dice"], out["iou"], out["tgs_iou"] = (torch.tensor(x, dtype=torch.float64) for x in (dice, ious, tgs))
    # MONAI's Dice per image as the Kaggle metric counts it: ignore_empty=False scores an empty
    # prediction of an empty mask 1 (and anything else against an empty mask 0).
    monai_dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)
    out["monai_dice"] = monai_dice(torch.from_numpy(pred[:, None]).double(), torch.from_numpy(truth[:, None]).double())[:, 0].double()

    # Classification metrics with ties in the scores.
    rng = np.random.RandomState(5)
    scores = np.round(rng.rand(200), 2)
    labels = (rng.rand(200) < 0.3 + 0.4 * scores).astype(np.int64)
    out["scores"], out["labels"] = torch.from_numpy(scores), torch.from_numpy(labels)
    predicted = (scores >= 0.5).astype(np.int64)
    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted).ravel()
    out["sk"] = torch.tensor([skm.roc_auc_score(labels, scores), skm.average_precision_score(labels, scores),
                              skm.precision_score(labels, predicted), skm.recall_score(labels, predicted),
                              skm.f1_score(labels, predicted), tn / (tn + fp), tp, fp, tn, fn], dtype=torch.float64)
    out["monai_auc"] = torch.tensor(compute_roc_auc(torch.from_numpy(scores), torch.from_numpy(labels)), dtype=torch.float64)
    # Multi-label AUCs as CheXNet's table: per class over the known targets (NaN: ignored),
    # scikit-learn's roc_auc_score each, and their mean; class 3 has one label only (no AUC).
    ml_scores = np.round(rng.rand(120, 4), 2)
    ml_targets = (rng.rand(120, 4) < 0.2 + 0.6 * ml_scores).astype(np.float32)
    ml_targets[rng.rand(120, 4) < 0.15] = np.nan
    ml_targets[:, 3] = np.where(np.isnan(ml_targets[:, 3]), np.nan, 1.0)
    aucs = []
    for c in range(4):
        known = ~np.isnan(ml_targets[:, c])
        labels_c = ml_targets[known, c]
        aucs.append(skm.roc_auc_score(labels_c, ml_scores[known, c]) if len(set(labels_c)) == 2 else np.nan)
    out["ml_scores"], out["ml_targets"] = torch.from_numpy(ml_scores), torch.from_numpy(ml_targets)
    out["ml_auc"] = torch.tensor(aucs, dtype=torch.float64)
    out["ml_mean_auc"] = torch.tensor(np.nanmean(aucs), dtype=torch.float64)
    # Masked BCE: the mean over the known targets only (PyTorch on the kept elements).
    ml_logits = torch.from_numpy(rng.randn(120, 4))
    known = ~torch.isnan(torch.from_numpy(ml_targets))
    kept_targets = torch.from_numpy(np.nan_to_num(ml_targets)).double()
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64).expand(120, 4)
    per = F.binary_cross_entropy_with_logits(ml_logits, kept_targets, pos_weight=weights[0], reduction="none")
    out["ml_logits"] = ml_logits
    out["ml_masked_bce"] = per[known].mean()
    torch.save(out, sys.argv[1])


if __name__ == "__main__":
    main()
