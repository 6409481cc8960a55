"""Writes a copy of a DICOM file with some header attributes changed, as a test's stand-in for
an image a hospital would send (a lateral view, a child, a knee), with a new SOP Instance UID so
that a PACS keeps both.

usage: edit_dicom.py SOURCE.dcm OUT.dcm Keyword=Value [Keyword=Value ...]
"""
import sys

import pydicom
from pydicom.uid import generate_uid


def main():
    source, out = sys.argv[1:3]
    dataset = pydicom.dcmread(source)
    for assignment in sys.argv[3:]:
        keyword, value = assignment.split("=", 1)
        setattr(dataset, keyword, value)
    dataset.SOPInstanceUID = generate_uid()
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    dataset.save_as(out)


if __name__ == "__main__":
    main()
