"""Channel coding for the watermark payload (private).

Payload word (80 bits) = 48-bit id || CRC-32 (zlib polynomial) of the id's 6
big-endian bytes, XOR-scrambled with a key-derived 80-bit mask (so that an
all-zero or all-one decode of an unmarked image never looks valid).

Channel code: convolutional code, constraint length 7, rate 1/3, generators
(133, 171, 165) octal (the LTE set), zero-tailed (6 tail bits): 86 input bits
-> 258 channel bits. Decoding: soft-input Viterbi with a correlation metric
(scale invariant, so soft values need no calibration; zeros are erasures).
"""

from __future__ import annotations

import hashlib
import zlib

import numpy as np

ID_BITS = 48
CRC_BITS = 32
INFO_BITS = ID_BITS + CRC_BITS  # 80
K = 7
GENERATORS = (0o133, 0o171, 0o165)
RATE_INV = len(GENERATORS)
N_STATES = 1 << (K - 1)
TAIL = K - 1
N_CODED = (INFO_BITS + TAIL) * RATE_INV  # 258


def keyed_bytes(key: bytes, label: bytes, n: int) -> bytes:
    """Deterministic key-derived byte stream (SHAKE-256), stable across versions."""
    return hashlib.shake_256(b"dhstudio-wm\x00" + key + b"\x00" + label).digest(n)


def keyed_bits(key: bytes, label: bytes, n: int) -> np.ndarray:
    raw = np.frombuffer(keyed_bytes(key, label, (n + 7) // 8), dtype=np.uint8)
    return np.unpackbits(raw)[:n].astype(np.uint8)


def _int_to_bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def _bits_to_int(bits: np.ndarray) -> int:
    v = 0
    for b in bits:
        v = (v << 1) | int(b)
    return v


def crc_of_id(wm_id: int) -> int:
    return zlib.crc32(int(wm_id).to_bytes(ID_BITS // 8, "big")) & 0xFFFFFFFF


def make_info_word(wm_id: int, key: bytes) -> np.ndarray:
    bits = np.concatenate([_int_to_bits(wm_id, ID_BITS), _int_to_bits(crc_of_id(wm_id), CRC_BITS)])
    return bits ^ keyed_bits(key, b"scramble", INFO_BITS)


def check_info_word(bits: np.ndarray, key: bytes) -> int | None:
    """Return the id when the CRC matches, else None."""
    plain = np.asarray(bits, dtype=np.uint8) ^ keyed_bits(key, b"scramble", INFO_BITS)
    wm_id = _bits_to_int(plain[:ID_BITS])
    crc = _bits_to_int(plain[ID_BITS:])
    return wm_id if crc == crc_of_id(wm_id) else None


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    out = np.zeros_like(x)
    while np.any(x):
        out ^= x & 1
        x >>= 1
    return out


# Trellis tables. State s = last 6 input bits, most recent in bit 0.
# Register r = (s << 1) | u (7 bits, bit 0 = current input); next state = r & 63.
_REG = np.arange(1 << K, dtype=np.int64)
_OUT = np.stack([_parity(_REG & g) for g in GENERATORS], axis=1).astype(np.int8)  # (128, 3)
_SYM = (2 * _OUT.astype(np.float32) - 1)  # bit 1 -> +1
# For each next state ns: predecessors s = (ns >> 1) | (b << 5), input u = ns & 1.
_NS = np.arange(N_STATES)
_PRED = np.stack([(_NS >> 1) | (b << (K - 2)) for b in (0, 1)], axis=1)  # (64, 2)
_PRED_REG = (_PRED << 1) | (_NS[:, None] & 1)  # (64, 2)
_PRED_SYM = _SYM[_PRED_REG]  # (64, 2, 3)


def conv_encode(info: np.ndarray) -> np.ndarray:
    bits = np.concatenate([np.asarray(info, dtype=np.int64), np.zeros(TAIL, dtype=np.int64)])
    out = np.empty((len(bits), RATE_INV), dtype=np.uint8)
    s = 0
    for t, u in enumerate(bits):
        r = (s << 1) | int(u)
        out[t] = _OUT[r]
        s = r & (N_STATES - 1)
    return out.reshape(-1)


def viterbi_decode(soft: np.ndarray) -> np.ndarray:
    """Soft Viterbi. soft[i] > 0 means channel bit i is more likely 1. Returns INFO_BITS bits."""
    soft = np.asarray(soft, dtype=np.float64).reshape(-1, RATE_INV)
    n = soft.shape[0]
    metric = np.full(N_STATES, -np.inf)
    metric[0] = 0.0
    decisions = np.empty((n, N_STATES), dtype=np.uint8)
    sym = _PRED_SYM.astype(np.float64)
    for t in range(n):
        bm = sym @ soft[t]  # (64, 2)
        cand = metric[_PRED] + bm
        d = (cand[:, 1] > cand[:, 0]).astype(np.uint8)
        decisions[t] = d
        metric = np.where(d == 1, cand[:, 1], cand[:, 0])
        metric -= metric.max()
    # zero tail -> end in state 0
    s = 0
    bits = np.empty(n, dtype=np.uint8)
    for t in range(n - 1, -1, -1):
        bits[t] = s & 1
        s = int(_PRED[s, decisions[t, s]])
    return bits[:INFO_BITS]


def viterbi_list(soft: np.ndarray, n_paths: int) -> list[np.ndarray]:
    """Parallel list Viterbi: the ``n_paths`` best zero-tailed paths, best first (INFO_BITS bits each).

    Each state keeps its ``n_paths`` best partial paths (metric and back-pointer); the list is
    read back from the zero state at the end. With n_paths = 1 this is viterbi_decode.
    """
    L = int(n_paths)
    soft = np.asarray(soft, dtype=np.float64).reshape(-1, RATE_INV)
    n = soft.shape[0]
    metric = np.full((N_STATES, L), -np.inf)
    metric[0, 0] = 0.0
    back = np.empty((n, N_STATES, L), dtype=np.int32)  # index into (branch b, rank l): b * L + l
    sym = _PRED_SYM.astype(np.float64)
    for t in range(n):
        bm = sym @ soft[t]  # (64, 2)
        cand = (metric[_PRED] + bm[:, :, None]).reshape(N_STATES, 2 * L)  # (64, 2L)
        idx = np.argsort(-cand, axis=1, kind="stable")[:, :L]
        back[t] = idx
        metric = np.take_along_axis(cand, idx, axis=1)
        top = metric.max()
        if np.isfinite(top):
            metric -= top
    out = []
    for rank in range(L):
        if not np.isfinite(metric[0, rank]):
            break
        s, r = 0, rank
        bits = np.empty(n, dtype=np.uint8)
        for t in range(n - 1, -1, -1):
            bits[t] = s & 1
            j = int(back[t, s, r])
            b, r = divmod(j, L)
            s = int(_PRED[s, b])
        out.append(bits[:INFO_BITS])
    return out
