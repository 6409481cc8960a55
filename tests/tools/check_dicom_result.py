"""Checks a DICOM result object of pneumo against its source, independently of pneumo: pydicom
for the attributes, then highdicom reads the object back as PACS-side tools do (the Segmentation
with highdicom.seg.segread: its segments and frames must equal the mask; the Secondary Capture
with highdicom.imread: its frame must equal the overlay).

usage: check_dicom_result.py seg RESULT.dcm SOURCE.dcm MASK.png
       check_dicom_result.py sc  RESULT.dcm SOURCE.dcm OVERLAY.png

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
    if kind == "seg":
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
