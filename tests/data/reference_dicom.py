"""Reference decoder for the DICOM conformance test: pydicom's pixel_array, as stored values
(`as_rgb=False`: pydicom 3 otherwise converts YBR colour to RGB, which read_dicom_stored does not).

For every *.dcm in the given folder, writes the first frame's stored values as little-endian
int32 (<name>.raw, shape rows x columns x samples) and one manifest line:
    name <TAB> ok|error <TAB> rows <TAB> columns <TAB> samples <TAB> transfer syntax <TAB> message
Decoders: pydicom 3's own (native and RLE), pylibjpeg's for JPEG and JPEG 2000, pyjpegls's for
JPEG-LS (all pinned in tools/python/requirements.txt).
"""
import os
import sys

import numpy as np
import pydicom
from pydicom.pixels import pixel_array


def main(source, out):
    os.makedirs(out, exist_ok=True)
    lines = []
    for name in sorted(os.listdir(source)):
        if not name.endswith(".dcm"):
            continue
        path = os.path.join(source, name)
        syntax = ""
        try:
            ds = pydicom.dcmread(path)
            syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", ""))
            pixels = pixel_array(ds, as_rgb=False)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            if frames > 1:
                pixels = pixels[0]
            if pixels.ndim == 2:
                pixels = pixels[:, :, None]
            if pixels.dtype.kind not in "iu":
                raise TypeError("pixel data of type %s" % pixels.dtype)
            rows, cols, samples = pixels.shape
            np.ascontiguousarray(pixels, dtype="<i4").tofile(os.path.join(out, name + ".raw"))
            lines.append("\t".join([name, "ok", str(rows), str(cols), str(samples), syntax, ""]))
        except Exception as error:  # the manifest records why pydicom could not decode it
            message = (type(error).__name__ + ": " + str(error)).replace("\t", " ").replace("\n", " ")
            lines.append("\t".join([name, "error", "0", "0", "0", syntax, message[:200]]))
    with open(os.path.join(out, "manifest.tsv"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
