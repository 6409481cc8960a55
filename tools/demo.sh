#!/usr/bin/env bash
# The main job on the embedded demo data: installs what is missing, builds, then runs pneumo
# end to end as far as it goes today, printing where the outputs are.
#   1. make the synthetic demo set (JPEG DICOMs + SIIM train-rle.csv, the same images as PNGs
#      with a mask folder, an image-level classes.csv; two images per patient) in demo/data
#   2. index the set, draw the folds, load every image and mask (filling the cache); the same
#      for the PNG layout and for the class table, with patient-grouped folds
#   3. convert one positive image to PNG, decode its label to a mask PNG and preview the
#      demo experiment's augmentation on it
#   4. cross-validate the demo experiment (configs/demo.yaml) over 3 folds: train each fold,
#      predict each fold's held-out images with its own model, tune the post-processing and
#      fit the probability's calibration on those out-of-fold predictions, report cv.md
#   5. evaluate the 3-fold ensemble on a separate held-out demo set at the images' own
#      resolution (metrics, calibration before and after, operating points with bootstrap
#      intervals, charts)
#   6. predict the held-out images with the ensemble and flip TTA (submission, masks,
#      overlays, Grad-CAM explanations, JSON lines, and per DICOM a Segmentation and a
#      Structured Report for the PACS)
#   7. export the ensemble as one TorchScript file
#   8. train a 3-label DenseNet121 classifier on the class table (configs/demo-classes.yaml)
#      and evaluate it: the AUC of each class and their mean
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/tools/setup.sh"
"$root/tools/build.sh"
pneumo="$root/build/bin/pneumo"
cd "$root"
out=demo

echo
"$pneumo" version
echo
echo "== 1. synthetic demo set"
"$pneumo" make-demo --out "$out/data" --count 200 --size 256 --seed 7 --png --images-per-patient 2

echo
echo "== 2. data check: index, folds, every image and mask loaded once"
"$pneumo" data check configs/demo.yaml --folds-out "$out/folds.csv"
"$pneumo" dicom info "$out"/data/dicom/*.dcm > "$out/dicom-info.txt"
"$pneumo" data check configs/demo-png.yaml --folds-out "$out/folds-png.csv"
"$pneumo" data check configs/demo-classes.yaml --no-load

echo
echo "== 3. one positive image and its mask"
positive=$(awk -F, 'NR > 1 && $2 != "-1" { print $1; exit }' "$out/data/train-rle.csv")
"$pneumo" dicom convert "$out/data/dicom/$positive.dcm" --out "$out/example-image.png"
"$pneumo" rle decode --csv "$out/data/train-rle.csv" --id "$positive" --height 256 --width 256 \
  --out "$out/example-mask.png"
"$pneumo" augment preview configs/demo.yaml --image "$out/data/dicom/$positive.dcm" \
  --mask "$out/example-mask.png" --out "$out/augment-preview.png"
echo "-- the experiment pneumo plan proposes from the demo data (fingerprint, measured batch size):"
"$pneumo" plan configs/demo.yaml --out "$out/plan.yaml" --overwrite --max-batch 16 | tee "$out/plan-summary.txt"

echo
echo "== 4. cross-validate configs/demo.yaml over 3 folds (U-Net ResNet18, 128x128, 15 epochs per fold)"
"$pneumo" cv configs/demo.yaml --set data.folds=3 --set experiment.run_name=demo-cv --overwrite | tee "$out/cv-summary.txt"
"$pneumo" make-demo --out "$out/test" --count 60 --size 256 --seed 8

echo
echo "== 5. evaluate the fold ensemble on 60 held-out images at full resolution"
"$pneumo" evaluate --model runs/demo/demo-cv --labels "$out/test/train-rle.csv" --images "$out/test/dicom" \
  --out "$out/evaluation"

echo
echo "== 6. predict the held-out images with the fold ensemble (flip TTA), explained, with DICOM results"
"$pneumo" predict --model runs/demo/demo-cv "$out/test/dicom" --tta --explain --out "$out/predictions" \
  --dicom-out "$out/predictions/dicom"

echo
echo "== 7. export the fold ensemble as TorchScript"
"$pneumo" export --model runs/demo/demo-cv --out "$out/demo-unet.pt"

echo
echo "== 8. a multi-label classifier on the class table (DenseNet121, 64x64, 3 epochs), per-class AUC"
"$pneumo" train configs/demo-classes.yaml --set experiment.run_name=demo --overwrite
"$pneumo" evaluate --model runs/demo-classes/demo --out "$out/evaluation-classes"

echo
echo "outputs:"
echo "  demo set:      $root/$out/data (dicom/, train-rle.csv; png/, masks/, patients.csv; classes.csv)"
echo "  folds:         $root/$out/folds.csv, $root/$out/folds-png.csv (patient-grouped)"
echo "  cache:         $root/$out/cache"
echo "  DICOM info:    $root/$out/dicom-info.txt"
echo "  example:       $root/$out/example-image.png, $root/$out/example-mask.png"
echo "  augmentation:  $root/$out/augment-preview.png"
echo "  CV run:        $root/runs/demo/demo-cv (cv.md, cv.json, postprocess.yaml, calibration.yaml, ensemble.json, fold-0..2/ runs, oof/)"
echo "  held-out set:  $root/$out/test (dicom/, train-rle.csv)"
echo "  evaluation:    $root/$out/evaluation (metrics.json, per_image.csv, roc.png, pr.png, confusion.png, reliability.png, dice_histogram.png, worst.png)"
echo "  predictions:   $root/$out/predictions (submission.csv, predictions.jsonl, refused.csv, masks/, overlays/, explanations/, dicom/ with .seg.dcm and .sr.dcm)"
echo "  TorchScript:   $root/$out/demo-unet.pt (the 3 fold models)"
echo "  classifier:    $root/runs/demo-classes/demo (metrics.csv with auc:<class> columns), $root/$out/evaluation-classes (class_metrics.csv, roc/)"
