"""What the Python sides of the benchmarks share: ImageNet normalisation and the SIIM RLE."""
import numpy as np

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def rle(mask):
    """SIIM encoding of a boolean mask: column-major, relative starts, "-1" when empty."""
    flat = mask.T.flatten().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [0]])))
    if edges.size == 0:
        return "-1"
    starts, ends = edges[::2], edges[1::2]
    gaps = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{g} {n}" for g, n in zip(gaps, ends - starts))
