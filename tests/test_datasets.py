"""samradbench.datasets: discovery (MSD and paired folders), targets, and SPEC §1 loading.

Volumes are written into tmp_path with samradbench.synthetic's helpers; expected values are worked
out by hand from the arrays written, never by calling the code under test.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel import orientations as nio

from samradbench.datasets import (
    SHORT_NAMES,
    CaseRef,
    Dataset,
    Target,
    choose_channel,
    discover_datasets,
    load_case,
    short_name,
    slugify,
    strip_case_suffix,
    target_mask,
)
from samradbench.errors import DataError
from samradbench.preprocess import slice_axis
from samradbench.synthetic import SyntheticCase, diagonal_affine, make_case, save_nifti, write_paired_dataset

PROSTATE_LABELS = {"0": "background", "1": "PZ", "2": "TZ"}


def write_msd(
    folder: Path,
    cases: list[tuple],
    labels: dict | None = None,
    modality: dict | None = None,
) -> Path:
    """An MSD folder from ``cases`` = [(case_id, image, label[, image_affine[, label_affine]])]."""
    training = []
    for case_id, image, label, *affines in cases:
        img_aff = affines[0] if affines else np.eye(4)
        lab_aff = affines[1] if len(affines) > 1 else img_aff
        save_nifti(folder / "imagesTr" / f"{case_id}.nii.gz", image, img_aff)
        save_nifti(folder / "labelsTr" / f"{case_id}.nii.gz", label, lab_aff)
        training.append({"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"})
    spec = {
        "name": folder.name,
        "labels": labels or {"0": "background", "1": "object"},
        "modality": modality or {"0": "MRI"},
        "training": training,
    }
    (folder / "dataset.json").write_text(json.dumps(spec))
    return folder


def only_dataset(root: Path) -> Dataset:
    (ds,) = discover_datasets(root)
    return ds


def load_only(root: Path):
    ds = only_dataset(root)
    return load_case(ds, ds.cases[0])


def square_label(shape=(16, 16, 4)) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[4:10, 4:10, 1:3] = 1
    return label


def b26_label() -> np.ndarray:
    """B26: label 1 at rows 5–10, cols 5–20; label 2 at rows 11–20, cols 5–20; slices 1–2."""
    label = np.zeros((32, 32, 4), np.uint8)
    label[5:11, 5:21, 1:3] = 1
    label[11:21, 5:21, 1:3] = 2
    return label


# --------------------------------------------------------------------------- names and targets


@pytest.mark.parametrize(
    "text, slug",
    [("PZ", "pz"), ("left atrium", "left-atrium"), ("Anterior", "anterior"), (" Whole  Gland/2 ", "whole-gland-2")],
)
def test_slugify(text, slug):
    assert slugify(text) == slug


@pytest.mark.parametrize(
    "folder, name",
    [
        ("Task01_BrainTumour", "braintumour"),
        ("Task04_Hippocampus", "hippocampus"),
        ("Task05_Prostate", "prostate"),
        ("Task08_HepaticVessel", "hepaticvessel"),
        ("LA2018_HeartMRI", "heart"),
        ("ProstateX_T2W_Zones", "prostate"),
        ("ProstateX_T2W_WholeGland", "prostatex"),
        ("PyRadiomics_LungCT", "lung"),
        ("Task500_KneeMRI", "kneemri"),
        ("My Data Set", "my-data-set"),
    ],
)
def test_short_names(folder, name):
    assert short_name(folder) == name


def test_short_name_table_covers_the_ten_msd_tasks():
    msd = {k: v for k, v in SHORT_NAMES.items() if k.startswith("Task")}
    assert sorted(msd.values()) == sorted(
        ["braintumour", "heart", "liver", "hippocampus", "prostate"]
        + ["lung", "pancreas", "hepaticvessel", "spleen", "colon"]
    )


@pytest.mark.parametrize(
    "modality, expected",
    [
        ({"0": "T2", "1": "ADC"}, (0, "T2")),
        ({"0": "ADC", "1": "T2"}, (1, "T2")),
        ({"0": "adc", "1": "t2w"}, (1, "t2w")),
        ({"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}, (3, "T2w")),
        ({"0": "FLAIR", "1": "T2*"}, (0, "FLAIR")),
        ({"0": "CT"}, (0, "CT")),
        ({}, (0, "unknown")),
    ],
)
def test_channel_choice(modality, expected):
    assert choose_channel(modality) == expected


@pytest.mark.parametrize(
    "stem, case_id",
    [
        ("ProstateX-0000_t2w", "ProstateX-0000"),
        ("case_7_0000", "case_7"),
        ("a_SEG", "a"),
        ("hippocampus_001", "hippocampus_001"),
    ],
)
def test_case_suffix_rule(stem, case_id):
    assert strip_case_suffix(stem) == case_id


def test_target_mask_single_union_and_foreground():
    label = np.array([[0, 1, 2, 3]])
    assert target_mask(label, Target("pz", (1,))).tolist() == [[False, True, False, False]]
    assert target_mask(label, Target("gland", (1, 2))).tolist() == [[False, True, True, False]]
    assert target_mask(label, Target("foreground", ())).tolist() == [[False, True, True, True]]
    assert target_mask(label, Target("pz", (1,))).dtype == bool


# --------------------------------------------------------------------------- MSD discovery


def test_msd_discovery_targets_and_gland_union(tmp_path):
    label = b26_label()
    cases = [(f"prostate_{i:02d}", np.ones(label.shape, np.float32), label) for i in (2, 0, 1)]
    write_msd(tmp_path / "Task05_Prostate", cases, PROSTATE_LABELS, {"0": "T2", "1": "ADC"})
    ds = only_dataset(tmp_path)
    assert ds.name == "prostate" and ds.kind == "msd"
    assert ds.targets == (Target("pz", (1,)), Target("tz", (2,)), Target("gland", (1, 2)))
    assert [c.case_id for c in ds.cases] == ["prostate_00", "prostate_01", "prostate_02"]
    assert ds.cases[0].image == tmp_path / "Task05_Prostate" / "imagesTr" / "prostate_00.nii.gz"
    assert (ds.channel, ds.channel_name) == (0, "T2")
    assert ds.modality == {"0": "T2", "1": "ADC"}
    assert discover_datasets(tmp_path) == discover_datasets(tmp_path)  # deterministic


def test_hippocampus_and_heart_target_names(tmp_path):
    lab = square_label()
    hippo_labels = {"0": "background", "1": "Anterior", "2": "Posterior"}
    write_msd(tmp_path / "Task04_Hippocampus", [("h1", lab, lab)], hippo_labels)
    write_msd(tmp_path / "LA2018_HeartMRI", [("la1", lab, lab)], {"0": "background", "1": "left atrium"})
    heart, hippo = discover_datasets(tmp_path)
    assert (heart.name, [t.name for t in heart.targets]) == ("heart", ["left-atrium"])
    assert (hippo.name, [t.name for t in hippo.targets]) == ("hippocampus", ["anterior", "posterior"])


def test_no_union_for_whole_gland_prostate(tmp_path):
    lab = square_label()
    write_msd(tmp_path / "ProstateX_T2W_WholeGland", [("p", lab, lab)], {"0": "background", "1": "prostate"})
    assert only_dataset(tmp_path).targets == (Target("prostate", (1,)),)


def test_nnunet_v2_label_map_and_no_training_list(tmp_path):
    folder = tmp_path / "Task05_Prostate"
    lab = b26_label()
    save_nifti(folder / "imagesTr" / "p1_0000.nii.gz", lab.astype(np.float32))
    save_nifti(folder / "labelsTr" / "p1.nii.gz", lab)
    spec = {"channel_names": {"0": "T2"}, "labels": {"background": 0, "whole": [1, 2], "PZ": 1, "TZ": 2}}
    (folder / "dataset.json").write_text(json.dumps(spec))
    ds = only_dataset(tmp_path)
    assert ds.targets == (Target("pz", (1,)), Target("tz", (2,)), Target("whole", (1, 2)), Target("gland", (1, 2)))
    assert [c.case_id for c in ds.cases] == ["p1"]


def test_root_may_be_the_dataset_folder_and_other_folders_are_ignored(tmp_path):
    lab = square_label()
    folder = write_msd(tmp_path / "Task09_Spleen", [("s1", lab, lab)], {"0": "background", "1": "spleen"})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("x")
    assert [d.name for d in discover_datasets(tmp_path)] == ["spleen"]
    assert discover_datasets(folder)[0].root == folder


def test_empty_root_says_what_layout_is_expected(tmp_path):
    (tmp_path / "something").mkdir()
    with pytest.raises(DataError, match="dataset.json, imagesTr/, labelsTr/"):
        discover_datasets(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        discover_datasets(tmp_path / "missing")


def test_two_folders_with_one_short_name_is_an_error_naming_both(tmp_path):
    lab = b26_label()
    write_msd(tmp_path / "Task05_Prostate", [("a", lab, lab)], PROSTATE_LABELS)
    write_msd(tmp_path / "ProstateX_T2W_Zones", [("b", lab, lab)], PROSTATE_LABELS)
    with pytest.raises(DataError) as err:
        discover_datasets(tmp_path)
    assert "Task05_Prostate" in str(err.value) and "ProstateX_T2W_Zones" in str(err.value)


def test_missing_listed_file_fails_that_case_only(tmp_path):
    """A dataset.json entry whose file is gone: discovery still lists the case (so the run records it
    as failed and goes on with the others); loading it names the missing file."""
    lab = square_label()
    folder = write_msd(tmp_path / "Task09_Spleen", [("s1", lab, lab), ("s2", lab, lab)],
                       {"0": "background", "1": "spleen"})
    (folder / "labelsTr" / "s1.nii.gz").unlink()
    (ds,) = discover_datasets(tmp_path)
    assert [c.case_id for c in ds.cases] == ["s1", "s2"]
    with pytest.raises(DataError, match=r"file not found: .*labelsTr/s1\.nii\.gz"):
        load_case(ds, ds.cases[0])
    assert load_case(ds, ds.cases[1]).label.any()


def test_invalid_dataset_json_is_named(tmp_path):
    folder = tmp_path / "Task09_Spleen"
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset.json"):
        discover_datasets(tmp_path)


def test_background_only_labels_are_an_error(tmp_path):
    lab = square_label()
    write_msd(tmp_path / "Task09_Spleen", [("s1", lab, lab)], {"0": "background"})
    with pytest.raises(DataError, match="no foreground label"):
        discover_datasets(tmp_path)


# --------------------------------------------------------------------------- paired folders


def _case(cid: str, shape=(16, 16, 4)) -> SyntheticCase:
    return make_case(shape, case_id=cid)


def test_paired_folder_by_case_id_with_modality_suffix(tmp_path):
    cases = [_case("ProstateX-0001"), _case("ProstateX-0000")]
    folder = write_paired_dataset(tmp_path / "ProstateX", cases, image_suffix="_t2w")
    ds = only_dataset(tmp_path)
    assert (ds.name, ds.kind) == ("prostatex", "paired")
    assert [c.case_id for c in ds.cases] == ["ProstateX-0000", "ProstateX-0001"]
    assert ds.cases[0].image == folder / "images" / "ProstateX-0000_t2w.nii.gz"
    assert ds.cases[0].label == folder / "masks" / "ProstateX-0000.nii.gz"
    assert ds.targets == (Target("foreground", ()),)
    loaded = load_case(ds, ds.cases[0])
    assert target_mask(loaded.label, ds.targets[0]).sum() == (loaded.label > 0).sum() > 0


def test_paired_folder_exact_stems_win_over_suffix_stripping(tmp_path):
    cases = [_case("case_0001"), _case("case_0002")]
    write_paired_dataset(tmp_path / "knee", cases, masks_dir="labels", labels={"1": "Cartilage"})
    ds = only_dataset(tmp_path)
    assert [c.case_id for c in ds.cases] == ["case_0001", "case_0002"]
    assert ds.targets == (Target("cartilage", (1,)),)


def test_paired_folder_unmatched_files_are_listed(tmp_path):
    folder = write_paired_dataset(tmp_path / "ProstateX", [_case("a"), _case("b")])
    save_nifti(folder / "images" / "c_t2w.nii.gz", np.zeros((4, 4, 4), np.float32))
    (folder / "masks" / "b.nii.gz").unlink()
    with pytest.raises(DataError) as err:
        discover_datasets(tmp_path)
    assert "b.nii.gz" in str(err.value) and "c_t2w.nii.gz" in str(err.value)


def test_paired_folder_ambiguous_case_ids(tmp_path):
    folder = write_paired_dataset(tmp_path / "px", [_case("a")], image_suffix="_t2w", mask_suffix="_seg")
    save_nifti(folder / "images" / "a_adc.nii.gz", np.zeros((16, 16, 4), np.float32))
    with pytest.raises(DataError, match="both give case id 'a'"):
        discover_datasets(tmp_path)


# --------------------------------------------------------------------------- loading: shapes and channels


def test_b22_trailing_singleton_is_squeezed(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((64, 64, 20, 1), dtype=np.float32)
    label = np.zeros((64, 64, 20), np.uint8)
    label[20:30, 20:30, 5:8] = 1
    case = load_only(write_msd(tmp_path / "b22", [("b22", image, label)]))
    assert case.image.shape == case.label.shape == (64, 64, 20)
    assert case.meta["original_shape"] == (64, 64, 20, 1)
    assert case.meta["shape"] == (64, 64, 20)
    assert case.meta["channel"] is None
    assert slice_axis(case.image.shape) == 2
    np.testing.assert_array_equal(case.image, image[..., 0])


def test_b24_leading_singleton_spatial_axis_is_kept(tmp_path):
    image = np.arange(64 * 64, dtype=np.float32).reshape(1, 64, 64)
    label = np.zeros((1, 64, 64), np.uint8)
    label[0, 10:20, 10:20] = 1
    case = load_only(write_msd(tmp_path / "b24", [("b24", image, label)]))
    assert case.image.shape == (1, 64, 64)
    assert slice_axis(case.image.shape) == 0


def test_4d_image_channel_from_modality(tmp_path):
    label = square_label()
    image = np.stack([np.full(label.shape, 10.0, np.float32), np.full(label.shape, 20.0, np.float32)], axis=-1)
    image[..., 1] += label  # channel 1 carries the structure
    write_msd(tmp_path / "Task05_Prostate", [("p", image, label)], PROSTATE_LABELS, {"0": "ADC", "1": "T2"})
    ds = only_dataset(tmp_path)
    case = load_case(ds, ds.cases[0])
    assert (ds.channel, ds.channel_name) == (1, "T2")
    assert case.meta["channel"] == 1 and case.meta["channel_name"] == "T2"
    assert case.meta["original_shape"] == (16, 16, 4, 2) and case.image.shape == (16, 16, 4)
    np.testing.assert_array_equal(case.image, image[..., 1])


def test_4d_image_without_t2_takes_channel_0(tmp_path):
    label = square_label()
    image = np.stack([np.full(label.shape, 1.0, np.float32), np.full(label.shape, 2.0, np.float32)], axis=-1)
    write_msd(tmp_path / "mr", [("p", image, label)], {"0": "bg", "1": "x"}, {"0": "FLAIR", "1": "T1"})
    case = load_only(tmp_path)
    assert case.meta["channel"] == 0 and np.all(case.image == 1.0)


def test_4d_label_is_refused(tmp_path):
    label = np.stack([square_label(), square_label()], axis=-1)
    write_msd(tmp_path / "x", [("c", np.zeros((16, 16, 4), np.float32), label)])
    with pytest.raises(DataError, match=r"labelsTr/c\.nii\.gz.*4-D"):
        load_only(tmp_path)


def test_label_with_trailing_singleton_is_squeezed(tmp_path):
    label = square_label()
    write_msd(tmp_path / "x", [("c", np.zeros((16, 16, 4), np.float32), label[..., None])])
    case = load_only(tmp_path)
    assert case.label.shape == (16, 16, 4) and case.meta["label_original_shape"] == (16, 16, 4, 1)


def test_shape_mismatch_names_both_files(tmp_path):
    write_msd(tmp_path / "x", [("c", np.zeros((16, 16, 5), np.float32), square_label())])
    with pytest.raises(DataError) as err:
        load_only(tmp_path)
    msg = str(err.value)
    assert "imagesTr/c.nii.gz" in msg and "labelsTr/c.nii.gz" in msg
    assert "(16, 16, 5)" in msg and "(16, 16, 4)" in msg


def test_affine_mismatch_names_both_files(tmp_path):
    label = square_label()
    shifted = np.eye(4)
    shifted[0, 3] = 0.01  # 10 µm: beyond the 1e-3 tolerance
    write_msd(tmp_path / "x", [("c", label.astype(np.float32), label, np.eye(4), shifted)])
    with pytest.raises(DataError) as err:
        load_only(tmp_path)
    assert "imagesTr/c.nii.gz" in str(err.value) and "labelsTr/c.nii.gz" in str(err.value)


def test_affines_within_tolerance_are_accepted(tmp_path):
    label = square_label()
    nudged = np.eye(4)
    nudged[0, 3] = 5e-4
    write_msd(tmp_path / "x", [("c", label.astype(np.float32), label, np.eye(4), nudged)])
    assert load_only(tmp_path).label.sum() == label.sum()


def test_lps_image_with_ras_label_on_the_same_grid_loads_matching(tmp_path):
    """The image is stored LPS (x and y reversed, negative diagonal), the label RAS; both describe
    the same voxels, so after reorientation the arrays line up exactly."""
    rng = np.random.default_rng(1)
    label = np.zeros((12, 10, 4), np.uint8)
    label[1:4, 2:7, 1:3] = 1  # asymmetric, so any flip would show
    image = rng.random(label.shape).astype(np.float32) + 5 * label
    ras = diagonal_affine((0.5, 0.5, 3.0))
    ras[:3, 3] = (-10.0, 20.0, 30.0)
    # the same grid described LPS: voxel (i, j, k) of the flipped array is voxel (11 - i, 9 - j, k)
    lps = ras @ nio.inv_ornt_aff(np.array([[0, -1], [1, -1], [2, 1]]), label.shape)
    assert nib.aff2axcodes(lps) == ("L", "P", "S")
    write_msd(tmp_path / "x", [("c", image[::-1, ::-1, :], label, lps, ras)])
    case = load_only(tmp_path)
    np.testing.assert_array_equal(case.image, image)
    np.testing.assert_array_equal(case.label, label)
    np.testing.assert_allclose(case.affine, ras, atol=1e-5)
    assert case.meta["orientation"] == "LPS" and case.meta["label_orientation"] == "RAS"
    assert case.spacing == (0.5, 0.5, 3.0)


_ORNTS = [
    np.array([[p, f] for p, f in zip(perm, flips)])
    for perm in itertools.permutations(range(3))
    for flips in itertools.product((1, -1), repeat=3)
]


@settings(max_examples=25)
@given(st.sampled_from(range(len(_ORNTS))), st.sampled_from(range(len(_ORNTS))), st.integers(0, 2**31 - 1))
def test_any_storage_orientation_loads_to_the_same_canonical_arrays(img_o, lab_o, seed):
    """Property: a volume stored under any axis permutation/flip (with the matching affine) loads
    back to the same RAS arrays and affine, independently for image and label."""
    rng = np.random.default_rng(seed)
    label = (rng.random((5, 6, 7)) > 0.6).astype(np.uint8)
    image = rng.random((5, 6, 7)).astype(np.float32)
    ras = np.diag([0.7, 0.8, 2.5, 1.0])
    ras[:3, 3] = (1.0, -2.0, 3.0)

    def stored(arr, ornt):
        return nio.apply_orientation(arr, ornt), ras @ nio.inv_ornt_aff(ornt, arr.shape)

    img_arr, img_aff = stored(image, _ORNTS[img_o])
    lab_arr, lab_aff = stored(label, _ORNTS[lab_o])
    with tempfile.TemporaryDirectory() as tmp:
        case = load_only(write_msd(Path(tmp) / "x", [("c", img_arr, lab_arr, img_aff, lab_aff)]))
    np.testing.assert_array_equal(case.image, image)
    np.testing.assert_array_equal(case.label, label)
    np.testing.assert_allclose(case.affine, ras, atol=1e-5)


def test_oblique_affine_reorients_like_nibabel(tmp_path):
    """An oblique (rotated) LPS-like grid: the result equals nibabel.as_closest_canonical's."""
    rng = np.random.default_rng(2)
    image = rng.random((8, 9, 3)).astype(np.float32)
    label = (image > 0.5).astype(np.uint8)
    c, s = np.cos(0.3), np.sin(0.3)
    aff = np.array([[-0.5 * c, 0.5 * s, 0, 50], [-0.5 * s, -0.5 * c, 0, 60], [0, 0, 3.0, -20], [0, 0, 0, 1]])
    write_msd(tmp_path / "x", [("c", image, label, aff)])
    case = load_only(tmp_path)
    ref = nib.as_closest_canonical(nib.Nifti1Image(image, aff))
    np.testing.assert_array_equal(case.image, np.asarray(ref.dataobj))
    np.testing.assert_allclose(case.affine, ref.affine, atol=1e-4)
    assert case.meta["orientation"] == "LPS"


# --------------------------------------------------------------------------- loading: label values


def test_b26_labels_give_pz_tz_gland(tmp_path):
    label = b26_label()
    write_msd(tmp_path / "Task05_Prostate", [("b26", label.astype(np.float32), label)], PROSTATE_LABELS, {"0": "T2"})
    ds = only_dataset(tmp_path)
    case = load_case(ds, ds.cases[0])
    assert [t.name for t in ds.targets] == ["pz", "tz", "gland"]
    counts = {t.name: int(target_mask(case.label, t).sum()) for t in ds.targets}
    assert counts == {"pz": 192, "tz": 320, "gland": 512}
    assert case.meta["label_values"] == (0, 1, 2)


def test_float_labels_that_are_whole_numbers_are_accepted(tmp_path):
    label = b26_label().astype(np.float32)
    write_msd(tmp_path / "x", [("c", label, label)])
    case = load_only(tmp_path)
    assert case.label.dtype.kind == "u" and case.meta["label_values"] == (0, 1, 2)
    np.testing.assert_array_equal(case.label, b26_label())


def test_non_integer_labels_are_refused(tmp_path):
    label = square_label().astype(np.float32) * 1.5
    write_msd(tmp_path / "x", [("c", label, label)])
    with pytest.raises(DataError, match=r"labelsTr/c\.nii\.gz.*whole numbers.*1\.5"):
        load_only(tmp_path)


def test_negative_labels_are_refused(tmp_path):
    label = square_label().astype(np.int16)
    label[0, 0, 0] = -1
    write_msd(tmp_path / "x", [("c", label.astype(np.float32), label)])
    with pytest.raises(DataError, match=r"labelsTr/c\.nii\.gz.*negative"):
        load_only(tmp_path)


def test_nan_labels_are_refused(tmp_path):
    label = square_label().astype(np.float32)
    label[0, 0, 0] = np.nan
    write_msd(tmp_path / "x", [("c", label, label)])
    with pytest.raises(DataError, match="NaN"):
        load_only(tmp_path)


def test_label_scale_factors_are_ignored_and_reported(tmp_path):
    """SPEC §1: labels are the raw stored data, not a scaled float. Stored int16 {0, 1, 2} with
    scl_slope 0.5 would scale to {0, 0.5, 1}; the harness keeps {0, 1, 2}, records the ignored
    factors and warns about them in the volume's notes."""
    from samradbench.runner import RunOptions, prepare_volume

    folder = tmp_path / "x"
    label = b26_label()
    write_msd(folder, [("c", label.astype(np.float32), label)])
    lab_path = folder / "labelsTr" / "c.nii.gz"
    save_nifti(lab_path, label.astype(np.int16), slope=0.5, inter=0.25)
    assert nib.load(str(lab_path)).dataobj.slope == 0.5  # nibabel moves scl_* from the header to dataobj
    case = load_only(tmp_path)
    np.testing.assert_array_equal(case.label, label)
    assert case.meta["label_values"] == (0, 1, 2)
    assert case.meta["label_scaling"] == (0.5, 0.25)
    ds = only_dataset(tmp_path)
    notes = prepare_volume(ds, ds.cases[0], RunOptions()).meta["warnings"]
    assert notes == ["label header scale factors ignored (scl_slope=0.5, scl_inter=0.25): the stored values are the labels"]


@pytest.mark.parametrize("value, ok", [(1.0005, True), (0.9991, True), (1.002, False), (1.0011, False)])
def test_label_whole_number_tolerance_is_1e_3(tmp_path, value, ok):
    """SPEC §1: whole numbers within 1e-3. |1.0005 − 1| = 5e-4 and |0.9991 − 1| = 9e-4 are accepted
    (rounded to 1); |1.002 − 1| = 2e-3 and |1.0011 − 1| = 1.1e-3 are refused."""
    label = square_label().astype(np.float64)
    label[label == 1] = value
    write_msd(tmp_path / "x", [("c", label.astype(np.float32), label)])
    if ok:
        assert load_only(tmp_path).meta["label_values"] == (0, 1)
    else:
        with pytest.raises(DataError, match="whole numbers"):
            load_only(tmp_path)


def test_big_endian_files_load_in_native_byte_order(tmp_path):
    folder = tmp_path / "x"
    label = b26_label()
    write_msd(folder, [("c", label.astype(np.float32), label)])
    for sub, arr in (("imagesTr", label.astype(np.float32) * 10), ("labelsTr", label.astype(np.int16))):
        img = nib.Nifti1Image(arr, np.eye(4), nib.Nifti1Header(endianness=">"))
        img.to_filename(str(folder / sub / "c.nii.gz"))
    case = load_only(tmp_path)
    assert case.image.dtype.isnative and case.label.dtype.isnative
    np.testing.assert_array_equal(case.image, label * 10.0)
    np.testing.assert_array_equal(case.label, label)


# --------------------------------------------------------------------------- loading: unreadable files


@pytest.mark.parametrize("damage", ["empty", "truncated_gz", "not_gzip"])
def test_corrupt_files_give_a_data_error_naming_the_file(tmp_path, damage):
    label = square_label()
    folder = write_msd(tmp_path / "x", [("c", label.astype(np.float32), label)])
    path = folder / "imagesTr" / "c.nii.gz"
    blob = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated_gz": blob[: len(blob) // 2], "not_gzip": b"garbage" * 100}[damage])
    with pytest.raises(DataError, match=r"imagesTr/c\.nii\.gz") as err:
        load_only(tmp_path)
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no nibabel/gzip traceback


def test_missing_file_at_load_time(tmp_path):
    label = square_label()
    folder = write_msd(tmp_path / "x", [("c", label.astype(np.float32), label)])
    ds = only_dataset(tmp_path)
    (folder / "imagesTr" / "c.nii.gz").unlink()
    with pytest.raises(DataError, match=r"file not found: .*imagesTr/c\.nii\.gz"):
        load_case(ds, ds.cases[0])


def test_meta_records_what_loading_did(tmp_path):
    label = square_label()
    aff = diagonal_affine((0.8, 0.9, 4.0), flip=(True, True, False))
    cases = [("c", label.astype(np.int16), label, aff)]
    write_msd(tmp_path / "Task09_Spleen", cases, {"0": "background", "1": "spleen"}, {"0": "CT"})
    case = load_only(tmp_path)
    m = case.meta
    assert m["original_shape"] == m["shape"] == (16, 16, 4)
    assert m["orientation"] == "LPS" and m["channel"] is None and m["channel_name"] == "CT"
    assert m["spacing"] == case.spacing == (0.8, 0.9, 4.0)
    assert m["label_values"] == (0, 1) and m["image_dtype"] == "int16"
    assert isinstance(case.ref, CaseRef) and case.image.dtype == np.int16
    json.dumps(m)  # JSON-ready


# --------------------------------------------------------------------------- the real shared data


def test_every_shared_case_loads(real_data_root):
    """Every case under the data root (``--data-root ../shared/data`` in CI) loads,
    has at least one target with ground truth, equal image/label shapes and integer labels.

    What the headers say (checked with nibabel when this was written):
    - Task04_Hippocampus (16 cases): RAS identity-like affine (1 mm, origin 1), uint8 or float32
      images (mixed within the set), uint8 labels {0, 1, 2}; shapes vary around 35×50×38, so the
      smallest-axis rule slices along axis 0 in 10 cases and along axis 2 in 6.
    - Task09_Spleen (1 cropped case): float32 HU, RAS diagonal, sform only (qform 0),
      164×166×26 at 0.79×0.79×5 mm → axis 2.
    - LA2018_HeartMRI (2): float32 z-scored, plain diagonal 0.625 mm affine (sform only; the real
      orientation is unknown), 183×140×88 and 230×143×88 → axis 2.
    - ProstateX_T2W_WholeGland / _Zones (2 each, same images): uint16 T2, LPS with an oblique
      affine (qform = sform), 384×384×19 at 0.5×0.5×3 mm → axis 2; reorientation flips x and y.
    - PyRadiomics_LungCT (1): int16 HU −1024..3071, LPS diagonal, 512×512×48 at 0.57×0.57×5 → axis 2.
    - No file has scl_slope/scl_inter set; every label is uint8; no 4-D or singleton-axis volume.
    """
    datasets = discover_datasets(real_data_root)
    if (real_data_root / "PROVENANCE.md").is_file():  # the shared collection: all of it is found
        assert {d.name for d in datasets} >= {"hippocampus", "spleen", "heart", "prostate", "prostatex", "lung"}
    for ds in datasets:
        for ref in ds.cases:
            case = load_case(ds, ref)
            assert case.image.ndim == 3 and case.image.shape == case.label.shape, ref
            assert case.label.dtype.kind == "u", ref
            present = [t.name for t in ds.targets if target_mask(case.label, t).any()]
            assert present, f"{ref.case_id}: no target has ground truth"
    for prostate in (d for d in datasets if d.name == "prostate"):
        assert [t.name for t in prostate.targets] == ["pz", "tz", "gland"]
