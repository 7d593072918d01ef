import numpy as np

from ferray.data import generate, read_parquet, write_parquet


def test_prepared_file_round_trip_keeps_content_and_fingerprint(tmp_path):
    data = generate(count=70, size=48, seed=1)
    back = read_parquet(write_parquet(data, tmp_path / "d.parquet"))
    assert back.images.dtype == np.uint8 and back.images.shape == data.images.shape
    assert np.array_equal(back.images, data.images)
    assert np.array_equal(back.aus, data.aus)
    assert list(back.subjects) == list(data.subjects)
    assert back.fingerprint() == data.fingerprint()
    changed = data.subset(np.arange(69))
    assert changed.fingerprint() != data.fingerprint()
    assert not list(tmp_path.glob("*.tmp"))
