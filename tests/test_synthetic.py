"""samradbench.synthetic: deterministic factories and the embedded default data set."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from samradbench import synthetic
from samradbench.datasets import discover_datasets, load_case, target_mask
from samradbench.preprocess import slice_axis
from samradbench.synthetic import ellipsoid, make_case, save_nifti, smooth_noise, write_default_data


@pytest.fixture(scope="module")
def default_root(tmp_path_factory):
    return write_default_data(tmp_path_factory.mktemp("default"))


def test_ellipsoid_voxel_count():
    # a sphere of radius 2 around a voxel centre: 33 lattice points with x² + y² + z² ≤ 4
    assert ellipsoid((9, 9, 9), (4, 4, 4), (2, 2, 2)).sum() == 33
    m = ellipsoid((10, 6, 4), (2, 2, 1), (1, 1, 10))
    assert m.dtype == bool and m.shape == (10, 6, 4) and m[2, 2].all() and not m[4, 2].any()


def test_smooth_noise_is_seeded_and_standardised():
    a, b, c = smooth_noise((16, 16, 4), 1), smooth_noise((16, 16, 4), 1), smooth_noise((16, 16, 4), 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(float(a.mean())) < 1e-5 and abs(float(a.std()) - 1) < 1e-4


def test_make_case_paints_regions_in_value_order():
    r1 = np.zeros((4, 4, 2), bool)
    r1[:2] = True
    r2 = np.zeros((4, 4, 2), bool)
    r2[1:3] = True
    case = make_case((4, 4, 2), {2: r2, 1: r1}, {1: 10.0, 2: 20.0}, background=-5, dtype=np.int16)
    assert case.label[:, 0, 0].tolist() == [1, 2, 2, 0]
    assert case.image[:, 0, 0].tolist() == [10, 20, 20, -5] and case.image.dtype == np.int16


def test_save_nifti_is_atomic_and_deterministic(tmp_path):
    arr = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    p = save_nifti(tmp_path / "a.nii.gz", arr, np.diag([2.0, 2.0, 2.0, 1.0]))
    first = p.read_bytes()
    save_nifti(p, arr, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert p.read_bytes() == first
    assert [f.name for f in tmp_path.iterdir()] == ["a.nii.gz"]  # no temporary file left
    np.testing.assert_array_equal(np.asarray(nib.load(str(p)).dataobj), arr)


def test_default_data_is_deterministic(tmp_path):
    a, b = write_default_data(tmp_path / "a"), write_default_data(tmp_path / "b")
    files = sorted(p.relative_to(a) for p in a.rglob("*.nii.gz"))
    assert len(files) == 10
    for rel in files:
        x, y = nib.load(str(a / rel)), nib.load(str(b / rel))
        np.testing.assert_array_equal(np.asarray(x.dataobj), np.asarray(y.dataobj))
        np.testing.assert_array_equal(x.affine, y.affine)
        assert (a / rel).read_bytes() == (b / rel).read_bytes()


def test_default_data_is_discoverable(default_root):
    datasets = discover_datasets(default_root)
    assert [(d.name, d.kind, len(d.cases)) for d in datasets] == [("prostate", "msd", 3), ("spleen", "msd", 2)]
    prostate, spleen = datasets
    assert [t.name for t in prostate.targets] == ["pz", "tz", "gland"]
    assert [t.name for t in spleen.targets] == ["spleen"]
    for folder in ("Task05_Prostate", "Task09_Spleen"):
        spec = json.loads((default_root / folder / "dataset.json").read_text())
        assert spec["synthetic"] is True and "not patient data" in spec["description"]


def test_prostate_is_4d_with_t2_at_channel_0(default_root):
    prostate = discover_datasets(default_root)[0]
    assert prostate.modality == {"0": "T2", "1": "ADC"} and (prostate.channel, prostate.channel_name) == (0, "T2")
    ref = prostate.cases[0]
    raw = nib.load(str(ref.image))
    assert raw.shape == (96, 96, 14, 2) and raw.get_data_dtype() == np.float32
    case = load_case(prostate, ref)
    assert case.meta["channel"] == 0 and case.image.shape == (96, 96, 14)
    assert slice_axis(case.image.shape) == 2
    # stored LPS, loaded RAS: the loaded arrays are exactly what the factory made
    made = synthetic.prostate_case(0)
    np.testing.assert_array_equal(case.image, made.image[..., 0])
    np.testing.assert_array_equal(case.label, made.label)
    assert case.meta["orientation"] == "LPS"
    # ADC differs from T2, and each zone has its own mean intensity
    assert not np.allclose(made.image[..., 0], made.image[..., 1])
    t2 = case.image
    means = [float(t2[case.label == v].mean()) for v in (1, 2)]
    assert means[0] > means[1] + 100  # PZ brighter than TZ on T2


def test_spleen_is_int16_hounsfield(default_root):
    spleen = discover_datasets(default_root)[1]
    case = load_case(spleen, spleen.cases[0])
    assert case.image.dtype == np.int16 and case.image.shape == (96, 80, 12)
    assert case.image.min() == -1024 and 600 < case.image.max() < 800
    assert 70 < float(case.image[case.label == 1].mean()) < 130
    assert slice_axis(case.image.shape) == 2


def test_every_target_present_in_every_case(default_root):
    for ds in discover_datasets(default_root):
        for ref in ds.cases:
            case = load_case(ds, ref)
            for target in ds.targets:
                assert target_mask(case.label, target).any(), (ref.case_id, target.name)


def test_rewrite_only_when_the_version_changes(tmp_path, monkeypatch):
    root = write_default_data(tmp_path / "d")
    spec = root / "Task09_Spleen" / "dataset.json"
    spec.write_text(spec.read_text())  # same content, new mtime
    before = spec.stat().st_mtime_ns
    write_default_data(root)
    assert spec.stat().st_mtime_ns == before  # current: nothing rewritten
    (root / "Task09_Spleen" / "imagesTr" / "spleen_99.nii.gz").write_bytes(b"stale")
    monkeypatch.setattr(synthetic, "DEFAULT_DATA_VERSION", synthetic.DEFAULT_DATA_VERSION + 1)
    write_default_data(root)
    assert json.loads((root / synthetic.MARKER_NAME).read_text())["version"] == synthetic.DEFAULT_DATA_VERSION
    assert not (root / "Task09_Spleen" / "imagesTr" / "spleen_99.nii.gz").exists()


def test_incomplete_folder_is_rewritten(tmp_path):
    root = write_default_data(tmp_path / "d")
    (root / "Task05_Prostate" / "labelsTr" / "prostate_01.nii.gz").unlink()
    write_default_data(root)
    assert len(discover_datasets(root)[0].cases) == 3


def test_generate_cli(tmp_path):
    import runpy
    import sys

    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "fixtures" / "generate.py"
    module = runpy.run_path(str(script))
    assert module["main"]([str(tmp_path / "out")]) == 0
    assert [d.name for d in discover_datasets(tmp_path / "out")] == ["prostate", "spleen"]
    assert sys.modules.get("samradbench.synthetic") is not None
