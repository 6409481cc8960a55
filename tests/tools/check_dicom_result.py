"""Checks a DICOM result object of pneumo against its source, independently of pneumo: pydicom
for the attributes, then highdicom reads the object back as PACS-side tools do (the Segmentation
with highdicom.seg.segread: its segments and frames must equal the mask; the Secondary Capture
with highdicom.imread: its frame must equal the overlay; the Structured Report with
highdicom.sr.srread as a TID 1500 Measurement Report: its group, references and values must be
what predict answered).

usage: check_dicom_result.py seg RESULT.dcm SOURCE.dcm MASK.png
       check_dicom_result.py sc  RESULT.dcm SOURCE.dcm OVERLAY.png
       check_dicom_result.py sr  RESULT.dcm SOURCE.dcm SEG.dcm PREDICTION_JSON

Prints one JSON object: {"problems": [...], ...}; exit 0 when there are none.
"""
import json
import sys

import cv2
import highdicom
import numpy as np
import pydicom

SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
STRUCTURED_REPORTS = ("1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33")  # Enhanced, Comprehensive


def check_report(result_path, result, source, seg_path, expected, expect):
    """The SR as highdicom reads it against the source, its SEG and predict's JSON line."""
    seg = pydicom.dcmread(seg_path)
    expect(result.SOPClassUID in STRUCTURED_REPORTS, "not an Enhanced/Comprehensive SR: " + result.SOPClassUID)
    expect(result.Modality == "SR", "Modality is not SR")
    evidence = {sop.ReferencedSOPInstanceUID
                for study in result.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for sop in series.ReferencedSOPSequence}
    expect(evidence == {source.SOPInstanceUID, seg.SOPInstanceUID},
           "the evidence lists %s, expected the source and the SEG" % sorted(evidence))
    report = highdicom.sr.srread(result_path).content
    expect(isinstance(report, highdicom.sr.MeasurementReport), "highdicom does not read a TID 1500 Measurement Report")
    groups = report.get_volumetric_roi_measurement_groups()
    expect(len(groups) == 1, "%d measurement groups, expected 1" % len(groups))
    if len(groups) != 1:
        return
    group = groups[0]
    expect(group.tracking_identifier == "Pneumothorax", "tracking identifier %r" % group.tracking_identifier)
    expect(group.finding_type.value == "36118008", "finding %s, expected Pneumothorax" % group.finding_type.value)
    segment = group.referenced_segment
    referenced = segment[0].ReferencedSOPSequence[0]
    expect(referenced.ReferencedSOPInstanceUID == seg.SOPInstanceUID, "the referenced segment is not in the SEG")
    expect(referenced.ReferencedSegmentNumber == 1, "referenced segment %s, expected 1" % referenced.ReferencedSegmentNumber)
    expect(segment[1].UID == source.SeriesInstanceUID, "the source series for segmentation is another series")
    values = {m.name.value: m for m in group.get_measurements()}
    probability = expected["calibrated_probability"]
    if probability is None:
        probability = expected["score"]
    expect("122157" in values and abs(float(values["122157"].value) - probability) < 1e-5,
           "the Probability is not predict's %s" % probability)
    if expected["area_mm2"] is not None:
        expect("42798000" in values and abs(float(values["42798000"].value) - expected["area_mm2"])
               <= 1e-5 * max(1.0, expected["area_mm2"]), "the Area is not predict's %s mm2" % expected["area_mm2"])
        if "42798000" in values:
            expect(values["42798000"].unit.value == "mm2", "the Area's unit is not mm2")
    presence = [item for item in result.ContentSequence if item.ValueType == "CONTAINER"
                and item.ConceptNameCodeSequence[0].CodeValue == "C0034375"]  # Qualitative Evaluations
    evaluations = [i for c in presence for i in c.ContentSequence
                   if i.ValueType == "CODE" and i.ConceptNameCodeSequence[0].CodeValue == "36118008"]
    expect(len(evaluations) == 1, "%d Pneumothorax evaluations, expected 1" % len(evaluations))
    if evaluations:
        said = evaluations[0].ConceptCodeSequence[0].CodeValue
        expect(said == ("52101004" if expected["positive"] else "2667000"),
               "the report says %s, predict said positive=%s" % (said, expected["positive"]))


def main():
    kind, result_path, source_path, image_path = sys.argv[1:5]
    result = pydicom.dcmread(result_path)
    source = pydicom.dcmread(source_path)
    problems = []

    def expect(condition, what):
        if not condition:
            problems.append(what)

    for keyword in ("StudyInstanceUID", "PatientID", "PatientName"):
        expect(str(result.get(keyword, "")) == str(source.get(keyword, "")), keyword + " differs from the source's")
    expect(result.SeriesInstanceUID != source.SeriesInstanceUID, "the result shares the source's series")
    expect(result.SOPInstanceUID != source.SOPInstanceUID, "the result shares the source's SOP Instance UID")
    info = {}
    if kind == "sr":
        check_report(result_path, result, source, image_path, json.loads(sys.argv[5]), expect)
    elif kind == "seg":
        expect(result.SOPClassUID == SEGMENTATION, "not a Segmentation: " + result.SOPClassUID)
        expect(result.Modality == "SEG", "Modality is not SEG")
        expect(result.SegmentationType == "BINARY", "not a binary segmentation")
        series = result.ReferencedSeriesSequence[0]
        expect(series.SeriesInstanceUID == source.SeriesInstanceUID, "ReferencedSeriesSequence names another series")
        expect(series.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID,
               "ReferencedInstanceSequence names another instance")
        derivation = result.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
        expect(derivation.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID,
               "the Derivation Image Sequence names another instance")
        segment = result.SegmentSequence[0]
        expect(segment.SegmentedPropertyTypeCodeSequence[0].CodeValue == "36118008", "the segment is not Pneumothorax")
        expect(segment.SegmentAlgorithmType == "AUTOMATIC", "the segment is not AUTOMATIC")
        mask = cv2.imread(image_path, cv2.IMREAD_GRAYSCALE)
        pixels = result.pixel_array
        expect(pixels.shape == mask.shape, "size %s, expected %s" % (pixels.shape, mask.shape))
        if pixels.shape == mask.shape:
            expect(np.array_equal(pixels.astype(bool), mask > 0),
                   "%d pixels differ from the mask" % int((pixels.astype(bool) != (mask > 0)).sum()))
        info["positive_pixels"] = int(pixels.astype(bool).sum())
        seg = highdicom.seg.segread(result_path)
        expect(seg.number_of_segments == 1, "highdicom reads %d segments, expected 1" % seg.number_of_segments)
        expect(str(seg.segmentation_type.value) == "BINARY", "highdicom reads a %s segmentation" % seg.segmentation_type)
        expect([str(c.value) for c in seg.segmented_property_types] == ["36118008"],
               "highdicom reads the segmented property types %s" % [str(c.value) for c in seg.segmented_property_types])
        expect(source.SOPInstanceUID in [uid[2] for uid in seg.get_source_image_uids()],
               "highdicom does not find the source among the segmentation's source images")
        by_source = seg.get_pixels_by_source_instance(source_sop_instance_uids=[source.SOPInstanceUID],
                                                      segment_numbers=[1])
        expect(by_source.shape == (1,) + mask.shape + (1,),
               "highdicom's frame for the source has shape %s, expected %s" % (by_source.shape, (1,) + mask.shape + (1,)))
        if by_source.shape == (1,) + mask.shape + (1,):
            expect(np.array_equal(by_source[0, :, :, 0].astype(bool), mask > 0),
                   "highdicom's frame differs from the mask in %d pixels"
                   % int((by_source[0, :, :, 0].astype(bool) != (mask > 0)).sum()))
    else:
        expect(result.SOPClassUID == SECONDARY_CAPTURE, "not a Secondary Capture: " + result.SOPClassUID)
        expect(result.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID,
               "the Source Image Sequence names another instance")
        expect(result.BurnedInAnnotation == "YES", "BurnedInAnnotation is not YES")
        overlay = cv2.cvtColor(cv2.imread(image_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        pixels = result.pixel_array
        expect(np.array_equal(pixels, overlay), "the pixels differ from the overlay")
        image = highdicom.imread(result_path)
        frame = image.get_frame(1)
        expect(frame.shape == overlay.shape and np.array_equal(frame, overlay),
               "highdicom's frame (shape %s) differs from the overlay" % (frame.shape,))
    print(json.dumps({"problems": problems, **info}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
