"""Exact and perceptual image hashes and fast near-duplicate search.

The perceptual hash is the classic 64-bit DCT hash (pHash): grayscale, area-resize to
32x32, 2-D DCT-II, keep the 8x8 lowest frequencies, one bit per coefficient above their
median. Near duplicates are pairs within a Hamming distance ``t``; candidates come from
multi-index hashing: the 64 bits are cut into ``t + 1`` bands, and by the pigeonhole
principle two hashes within distance ``t`` agree exactly on at least one band.
"""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["exact_hashes", "group_pairs", "near_duplicate_pairs", "phash64"]

_SMALL = 32
_LOW = 8


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    table = np.asarray([bin(i).count("1") for i in range(256)], np.uint8)
    return table[np.ascontiguousarray(x, np.uint64).view(np.uint8).reshape(-1, 8)].sum(axis=1)


def _area_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` weights averaging each output cell's share of the input."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def _dct_matrix(n: int, keep: int) -> np.ndarray:
    """First ``keep`` rows of the orthonormal DCT-II matrix of size ``n``."""
    k = np.arange(keep)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


def phash64(images: np.ndarray, batch_bytes: int = 64 << 20) -> np.ndarray:
    """64-bit DCT perceptual hashes of ``uint8`` ``(N, H, W, C)`` images, as ``uint64``."""
    n, h, w, c = images.shape
    rows = (_dct_matrix(_SMALL, _LOW) @ _area_matrix(h, _SMALL)).astype(np.float32)  # (8, H)
    cols = (_dct_matrix(_SMALL, _LOW) @ _area_matrix(w, _SMALL)).astype(np.float32)  # (8, W)
    luma = np.asarray([0.299, 0.587, 0.114], np.float32)
    weights = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)
    out = np.empty(n, np.uint64)
    step = max(1, batch_bytes // max(1, h * w * 4))
    for start in range(0, n, step):
        block = images[start : start + step]
        gray = block[..., 0].astype(np.float32) if c == 1 else block.astype(np.float32) @ luma
        low = rows @ gray @ cols.T  # (b, 8, 8) lowest frequencies
        flat = low.reshape(len(block), -1)
        bits = flat > np.median(flat, axis=1, keepdims=True)
        out[start : start + len(block)] = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return out


def exact_hashes(images: np.ndarray) -> np.ndarray:
    """A 64-bit content hash per image (blake2b of its bytes), as ``uint64``."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return np.asarray(
        [int.from_bytes(hashlib.blake2b(row.data, digest_size=8).digest(), "little") for row in flat],
        dtype=np.uint64,
    )


def group_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs ``(i, j)``, ``i < j``, whose ``keys`` are equal."""
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
    sizes = np.diff(np.r_[starts, len(sk)])
    # position of each sorted element inside its group, and its group's size
    gsize = np.repeat(sizes, sizes)
    offset = np.arange(len(sk)) - np.repeat(starts, sizes)
    left, right = [], []
    pos = np.flatnonzero(gsize > 1)
    k = 1
    while len(pos):
        pos = pos[offset[pos] + k < gsize[pos]]
        if not len(pos):
            break
        left.append(order[pos])
        right.append(order[pos + k])
        k += 1
    if not left:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    a, b = np.concatenate(left), np.concatenate(right)
    return np.minimum(a, b), np.maximum(a, b)


def near_duplicate_pairs(hashes: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j, distance)`` with ``i < j`` and Hamming distance ``<= threshold``.

    Exact through multi-index hashing on ``threshold + 1`` bands of the 64 bits.
    """
    hashes = np.asarray(hashes, np.uint64)
    bands = threshold + 1
    edges = np.linspace(0, 64, bands + 1).astype(int)
    found_a, found_b = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = np.uint64((1 << (hi - lo)) - 1)
        key = (hashes >> np.uint64(lo)) & mask
        a, b = group_pairs(key)
        if len(a):
            dist = _popcount(hashes[a] ^ hashes[b])
            keep = dist <= threshold
            found_a.append(a[keep])
            found_b.append(b[keep])
    if not found_a:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    pair = np.unique(a.astype(np.int64) * len(hashes) + b)
    a, b = pair // len(hashes), pair % len(hashes)
    return a, b, _popcount(hashes[a] ^ hashes[b]).astype(np.int64)
