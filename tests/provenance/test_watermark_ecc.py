"""Channel code of the watermark: encoder, Viterbi and list-Viterbi decoders, CRC word."""

import numpy as np

from provenance.watermark import _ecc


def _noisy(rng, sigma):
    info = rng.integers(0, 2, _ecc.INFO_BITS).astype(np.uint8)
    coded = _ecc.conv_encode(info).astype(np.float64) * 2 - 1
    return info, coded + rng.normal(0.0, sigma, coded.size)


def test_clean_round_trip_and_crc():
    key = b"k"
    word = _ecc.make_info_word(123456789, key)
    soft = _ecc.conv_encode(word).astype(np.float64) * 2 - 1
    assert (_ecc.viterbi_decode(soft) == word).all()
    paths = _ecc.viterbi_list(soft, 4)
    assert (paths[0] == word).all()
    assert _ecc.check_info_word(paths[0], key) == 123456789
    assert all(_ecc.check_info_word(p, key) is None for p in paths[1:])


def test_list_head_is_the_viterbi_path_and_paths_are_distinct():
    rng = np.random.default_rng(1)
    for _ in range(30):
        _, soft = _noisy(rng, 1.0)
        paths = _ecc.viterbi_list(soft, 8)
        assert len(paths) == 8
        assert (paths[0] == _ecc.viterbi_decode(soft)).all()
        assert len({p.tobytes() for p in paths}) == 8


def test_list_decoding_recovers_words_plain_viterbi_misses():
    rng = np.random.default_rng(2)
    miss_1 = miss_4 = 0
    for _ in range(150):
        info, soft = _noisy(rng, 1.2)
        paths = _ecc.viterbi_list(soft, 4)
        miss_1 += not (paths[0] == info).all()
        miss_4 += not any((p == info).all() for p in paths)
    assert miss_4 < miss_1 * 0.8, (miss_1, miss_4)
