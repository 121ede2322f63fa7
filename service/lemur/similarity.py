"""Code similarity as LEMUR measures it: MinHash signatures of model source and their Jaccard
estimate, with LEMUR's similarity bands.

A signature is LEMUR's (``ab.nn.util.NNAnalysisSimilarity``): the source split into identifier
and single-character tokens, shingles of 7 consecutive tokens (the whole token list when shorter),
a 128-permutation MinHash of the shingles (``datasketch``'s, whose permutations are seeded, so the
values equal LEMUR's), packed as 128 little-endian ``uint32`` (512 bytes, LEMUR's ``nn_minhash``
blob). The estimated Jaccard similarity of two codes is the share of equal values.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["NUM_PERM", "SHINGLE", "SIM_BANDS", "band_range", "code_signature", "jaccard"]

NUM_PERM = 128
SHINGLE = 7
_TOKEN = re.compile(r"[A-Za-z_]\w*|[^\s]")

#: LEMUR's similarity bands: name -> [min, max) of the estimated Jaccard similarity to the anchor
SIM_BANDS: dict[str, tuple[float, float]] = {
    "very_high": (0.98, 1.0000001),
    "high": (0.95, 0.98),
    "medium": (0.85, 0.95),
    "low": (0.60, 0.85),
    "very_low_near": (0.30, 0.60),
    "very_low_far": (0.0, 0.30),
}


def band_range(band: str | None, low: float, high: float) -> tuple[float, float]:
    """A band's [min, max), or ``(low, high)`` (``min/max_arch_jaccard``) without a band."""
    if band is None:
        return float(low), float(high)
    if band not in SIM_BANDS:
        raise ValueError(f"unknown similarity_band {band!r}: choose one of {', '.join(SIM_BANDS)} or none")
    return SIM_BANDS[band]


def code_signature(code: str) -> bytes:
    """``code``'s MinHash signature, packed as LEMUR packs it."""
    from datasketch import MinHash

    tokens = _TOKEN.findall(code or "")
    if len(tokens) < SHINGLE:
        shingles = [" ".join(tokens)] if tokens else []
    else:
        shingles = [" ".join(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1)]
    signature = MinHash(num_perm=NUM_PERM)
    if shingles:
        signature.update_batch([s.encode("utf-8") for s in shingles])
    return np.asarray(signature.hashvalues, dtype="<u4").tobytes()


def jaccard(anchor: bytes, others: list[bytes]) -> np.ndarray:
    """The estimated Jaccard similarity of ``anchor`` to each of ``others`` (share of equal values)."""
    if not others:
        return np.zeros(0)
    first = np.frombuffer(anchor, dtype="<u4")
    rest = np.frombuffer(b"".join(others), dtype="<u4").reshape(len(others), NUM_PERM)
    return (rest == first).sum(axis=1) / NUM_PERM
