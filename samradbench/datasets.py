"""SPEC §1: find datasets, load a volume and its label on one canonical grid, name the targets.

Knows nothing of SAM (no torch). Two folder layouts are understood:

* **MSD** (Medical Segmentation Decathlon): ``dataset.json`` + ``imagesTr/`` + ``labelsTr/``. Cases
  are the ``training`` entries of ``dataset.json`` (paths such as ``./imagesTr/x.nii.gz``, resolved
  relative to the folder); without a ``training`` list, ``imagesTr/`` and ``labelsTr/`` are paired
  by the paired-folder rule below. Targets are the foreground ``labels`` of ``dataset.json``.
* **paired** (ProstateX style, no ``dataset.json``): ``images/`` and ``masks/`` (or ``labels/``).
  Files (``.nii`` / ``.nii.gz``, hidden files ignored) are paired by case id:

  1. the *stem* is the file name without ``.nii.gz`` / ``.nii``;
  2. an image and a mask with the same stem are a case (case id = the stem);
  3. the files left over are paired on their stem with one trailing modality/mask suffix removed:
     ``_`` followed by four digits (nnU-Net channel, ``_0000``) or by one of
     :data:`CASE_ID_SUFFIXES` (``_t2w``, ``_adc``, ``_mask``, ``_seg``, …, case-insensitive);
  4. any file still unmatched, or two files of one folder giving the same case id, is a
     :class:`DataError` listing them — a case is never dropped silently.

  Targets come from an optional ``targets.json`` (``{"labels": {"1": "gland"}}``, optionally with a
  ``"modality"`` map); without it there is one target ``foreground`` = every nonzero label.

``discover_datasets(root)`` accepts a dataset folder or a folder of dataset folders (one level).
Each dataset gets a short lowercase name for test ids from :data:`SHORT_NAMES`; target unions (the
prostate ``gland``) come from :data:`TARGET_UNIONS`.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from .errors import DataError
from .fileio import sha256_file

#: Dataset folder name → short name used in pytest ids. MSD task folders map to the decathlon's
#: task names; the shared stand-ins map to the task they stand in for. Any other folder gets
#: :func:`slugify` of its name with a leading ``TaskNN_`` removed (``Task500_Knee`` → ``knee``).
SHORT_NAMES: dict[str, str] = {
    "Task01_BrainTumour": "braintumour",
    "Task02_Heart": "heart",
    "Task03_Liver": "liver",
    "Task04_Hippocampus": "hippocampus",
    "Task05_Prostate": "prostate",
    "Task06_Lung": "lung",
    "Task07_Pancreas": "pancreas",
    "Task08_HepaticVessel": "hepaticvessel",
    "Task09_Spleen": "spleen",
    "Task10_Colon": "colon",
    # shared stand-ins (see shared/data/PROVENANCE.md)
    "LA2018_HeartMRI": "heart",  # left atrium MRI, stands in for MSD Task02
    "ProstateX_T2W_Zones": "prostate",  # MSD Task05 coding: 1 = PZ, 2 = TZ
    "ProstateX_T2W_WholeGland": "prostatex",  # 1 = whole gland
    "PyRadiomics_LungCT": "lung",  # a lung lesion, not MSD's lung tumour set
}

#: Short dataset name → {union target name: member target names}. A union is added only when all
#: its members are targets of the dataset; it covers the union of their label values.
TARGET_UNIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "prostate": {"gland": ("pz", "tz")},
    "prostatex": {"gland": ("pz", "tz")},
}

#: Trailing ``_<suffix>`` words stripped from paired-folder file stems (besides ``_NNNN``).
CASE_ID_SUFFIXES: tuple[str, ...] = (
    "t1", "t1w", "t1c", "t1ce", "t1gd", "t2", "t2w", "flair", "adc", "dwi", "hbv", "pd", "ct", "mr",
    "mri", "image", "img", "mask", "seg", "segmentation", "label", "labels", "gt",
)  # fmt: skip

AFFINE_TOLERANCE = 1e-3  # SPEC §1: image and label affines must agree within this (after RAS)
LABEL_TOLERANCE = 1e-3  # SPEC §1: label values must be whole numbers within this

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_SUFFIX_RE = re.compile(r"_(\d{4}|" + "|".join(CASE_ID_SUFFIXES) + r")$", re.IGNORECASE)
_T2_RE = re.compile(r"^t2[\s_-]?(w|weighted)?$", re.IGNORECASE)
_MSD_PREFIX_RE = re.compile(r"^task\d+_", re.IGNORECASE)
_PAIRED_MASK_DIRS = ("masks", "labels")


@dataclass(frozen=True)
class Target:
    """One structure to segment: a label value, or a union of values.

    An empty ``labels`` tuple means *every nonzero label* (a paired folder's ``foreground``).
    """

    name: str
    labels: tuple[int, ...]


@dataclass(frozen=True)
class CaseRef:
    """One volume of a dataset: its image file and its label file."""

    dataset: str
    case_id: str
    image: Path
    label: Path


@dataclass(frozen=True)
class Dataset:
    """A discovered dataset: short ``name`` for test ids, its ``targets`` and ``cases`` (sorted),
    the ``modality`` map and the image ``channel`` chosen from it (used for 4-D images)."""

    name: str
    root: Path
    kind: str  # "msd" | "paired"
    targets: tuple[Target, ...]
    cases: tuple[CaseRef, ...]
    modality: dict[str, str] = field(hash=False)
    channel: int
    channel_name: str


@dataclass
class LoadedCase:
    """A case on the canonical (RAS) grid: a 3-D image, a 3-D integer label of the same shape,
    the voxel spacing (mm, per array axis), the canonical affine and what loading recorded."""

    ref: CaseRef
    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    affine: np.ndarray
    meta: dict


# --------------------------------------------------------------------------- names


def slugify(text: str) -> str:
    """Lowercase ``text`` with every run of non-alphanumerics turned into one ``-`` ("left atrium"
    → "left-atrium", "PZ" → "pz"); "" when nothing is left."""
    return re.sub(r"[^a-z0-9]+", "-", text.strip().lower()).strip("-")


def short_name(folder_name: str) -> str:
    """The short dataset name for a folder: :data:`SHORT_NAMES`, else the slug of the folder name
    without a ``TaskNN_`` prefix."""
    if folder_name in SHORT_NAMES:
        return SHORT_NAMES[folder_name]
    name = slugify(_MSD_PREFIX_RE.sub("", folder_name))
    return name or slugify(folder_name) or "dataset"


def choose_channel(modality: Mapping[str, str]) -> tuple[int, str]:
    """(channel, its name) for 4-D images: the channel named T2 (``T2``, ``t2w``, ``T2-weighted``,
    any case), else channel 0. The name is "unknown" when the map does not name the channel."""
    for key in sorted(modality, key=_int_key):
        if _T2_RE.match(str(modality[key]).strip()):
            return int(key), str(modality[key])
    return 0, str(modality.get("0", "unknown"))


def nifti_stem(path: Path) -> str:
    """The file name without ``.nii.gz`` / ``.nii``."""
    name = path.name
    for suffix in _NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def strip_case_suffix(stem: str) -> str:
    """``stem`` without one trailing ``_NNNN`` / ``_<modality or mask word>`` suffix."""
    return _SUFFIX_RE.sub("", stem) or stem


def _int_key(key: Any) -> int:
    try:
        return int(key)
    except (TypeError, ValueError):
        return 1 << 30


# --------------------------------------------------------------------------- targets


def _parse_label_map(labels: Any, source: Path) -> dict[str, tuple[int, ...]]:
    """{target name: label values} from an MSD ``labels`` map, background (0) left out.

    Accepts MSD's ``{"1": "PZ"}`` and nnU-Net v2's ``{"PZ": 1}`` / ``{"gland": [1, 2]}``.
    """
    if not isinstance(labels, Mapping) or not labels:
        raise DataError(f"{source}: 'labels' must be a non-empty mapping, got {labels!r}")
    pairs: list[tuple[tuple[int, ...], str]] = []
    for key, value in labels.items():
        try:
            if str(key).strip().lstrip("-").isdigit():
                pairs.append(((int(key),), str(value)))
            elif isinstance(value, (list, tuple)):
                pairs.append((tuple(sorted(int(v) for v in value)), str(key)))
            else:
                pairs.append(((int(value),), str(key)))
        except (TypeError, ValueError):
            raise DataError(f"{source}: label entry {key!r}: {value!r} is not an integer label") from None
    out: dict[str, tuple[int, ...]] = {}
    for values, name in sorted(pairs, key=lambda p: (len(p[0]) > 1, p)):  # single labels first
        values = tuple(v for v in values if v != 0)
        if not values:
            continue
        if any(v < 0 for v in values):
            raise DataError(f"{source}: negative label value in {values} ({name!r})")
        slug = slugify(name) or f"label-{values[0]}"
        if slug in out:
            raise DataError(f"{source}: two labels are both named {slug!r}")
        out[slug] = values
    if not out:
        raise DataError(f"{source}: 'labels' names no foreground label (only background)")
    return out


def build_targets(dataset_name: str, label_map: Mapping[str, tuple[int, ...]]) -> tuple[Target, ...]:
    """The dataset's targets: each label in value order, then the unions of :data:`TARGET_UNIONS`
    whose members all exist (sorted by name)."""
    targets = [Target(name, tuple(values)) for name, values in label_map.items()]
    for union, members in sorted(TARGET_UNIONS.get(dataset_name, {}).items()):
        if union in label_map or not all(m in label_map for m in members):
            continue
        values = sorted({v for m in members for v in label_map[m]})
        targets.append(Target(union, tuple(values)))
    return tuple(targets)


def target_mask(label: np.ndarray, target: Target) -> np.ndarray:
    """Boolean mask of the voxels of ``label`` that belong to ``target`` (any nonzero label when
    ``target.labels`` is empty)."""
    label = np.asarray(label)
    if not target.labels:
        return label != 0
    if len(target.labels) == 1:
        return label == target.labels[0]
    return np.isin(label, np.asarray(target.labels))


# --------------------------------------------------------------------------- discovery


def _read_json(path: Path) -> dict:
    """The JSON object in ``path``; DataError when it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _parse_modality(raw: Any, source: Path) -> dict[str, str]:
    """A ``modality`` / ``channel_names`` map as {"0": "T2", …} (empty when absent)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DataError(f"{source}: 'modality' must be a mapping, got {raw!r}")
    out = {}
    for key, value in raw.items():
        if not str(key).strip().isdigit():
            raise DataError(f"{source}: modality key {key!r} is not a channel number")
        out[str(int(key))] = str(value)
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def _nifti_files(folder: Path) -> list[Path]:
    """The non-hidden ``.nii`` / ``.nii.gz`` files directly in ``folder``, sorted by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(_NIFTI_SUFFIXES)
    )


def _ids_by(files: Iterable[Path], key, folder: Path) -> dict[str, Path]:
    """{case id: file} under ``key``; DataError when two files give the same id."""
    out: dict[str, Path] = {}
    for f in files:
        cid = key(f)
        if cid in out:
            raise DataError(f"{folder}: {out[cid].name} and {f.name} both give case id {cid!r}")
        out[cid] = f
    return out


def pair_files(images_dir: Path, masks_dir: Path) -> list[tuple[str, Path, Path]]:
    """[(case id, image, mask)] sorted by case id, paired by the rule in the module docstring."""
    images, masks = _nifti_files(images_dir), _nifti_files(masks_dir)
    mask_by_stem = {nifti_stem(m): m for m in masks}
    pairs = [(nifti_stem(i), i, mask_by_stem[nifti_stem(i)]) for i in images if nifti_stem(i) in mask_by_stem]
    used = {p for _, i, m in pairs for p in (i, m)}

    def stripped(p: Path) -> str:
        return strip_case_suffix(nifti_stem(p))

    rest_i = _ids_by([i for i in images if i not in used], stripped, images_dir)
    rest_m = _ids_by([m for m in masks if m not in used], stripped, masks_dir)
    lone_i = sorted(rest_i[c].name for c in rest_i.keys() - rest_m.keys())
    lone_m = sorted(rest_m[c].name for c in rest_m.keys() - rest_i.keys())
    if lone_i or lone_m:
        raise DataError(
            f"{images_dir.parent}: files without a partner (paired by case id): "
            f"images without a mask {lone_i or 'none'} in {images_dir}; "
            f"masks without an image {lone_m or 'none'} in {masks_dir}"
        )
    pairs += [(cid, rest_i[cid], rest_m[cid]) for cid in rest_i.keys() & rest_m.keys()]
    pairs.sort()
    for (cid, a, _), (nxt, b, _) in zip(pairs, pairs[1:]):
        if cid == nxt:
            raise DataError(f"{images_dir}: {a.name} and {b.name} both give case id {cid!r}")
    return pairs


def _is_msd(folder: Path) -> bool:
    return (folder / "dataset.json").is_file() and (folder / "imagesTr").is_dir()


def _paired_masks_dir(folder: Path) -> Path | None:
    """The paired layout's mask folder (``masks/`` or ``labels/``), or None if not paired."""
    if not (folder / "images").is_dir() or (folder / "dataset.json").is_file():
        return None
    found = [folder / d for d in _PAIRED_MASK_DIRS if (folder / d).is_dir()]
    if len(found) > 1:
        raise DataError(f"{folder}: both {found[0].name}/ and {found[1].name}/ exist; keep one mask folder")
    return found[0] if found else None


def _resolve_entry(folder: Path, entry: Any, key: str, source: Path) -> Path:
    if not isinstance(entry, Mapping) or not isinstance(entry.get(key), str):
        raise DataError(f"{source}: training entry {entry!r} has no {key!r} path")
    path = Path(entry[key])
    return path if path.is_absolute() else (folder / path)


def _msd_cases(folder: Path, name: str, spec: dict, source: Path) -> list[CaseRef]:
    """The cases of an MSD folder from its ``training`` list (or by pairing imagesTr/labelsTr)."""
    training = spec.get("training")
    if training is None:
        if not (folder / "labelsTr").is_dir():
            raise DataError(f"{source}: no 'training' list and no labelsTr/ folder in {folder}")
        return [CaseRef(name, c, i, m) for c, i, m in pair_files(folder / "imagesTr", folder / "labelsTr")]
    if not isinstance(training, list):
        raise DataError(f"{source}: 'training' must be a list of {{'image', 'label'}} entries")
    refs = []
    for entry in training:
        image = _resolve_entry(folder, entry, "image", source)
        label = _resolve_entry(folder, entry, "label", source)
        refs.append(CaseRef(name, nifti_stem(image), image, label))
    # A listed file that does not exist is that case's problem, not the dataset's: load_case raises
    # a DataError naming it, the run records the volume as failed and goes on with the others.
    return refs


def _sorted_unique_cases(refs: list[CaseRef], folder: Path) -> tuple[CaseRef, ...]:
    seen: dict[str, CaseRef] = {}
    for r in refs:
        if r.case_id in seen:
            raise DataError(f"{folder}: case id {r.case_id!r} appears twice ({seen[r.case_id].image}, {r.image})")
        seen[r.case_id] = r
    if not seen:
        raise DataError(f"{folder}: the dataset has no cases")
    return tuple(seen[k] for k in sorted(seen))


def _make_dataset(
    folder: Path, kind: str, labels: dict[str, tuple[int, ...]], modality: dict[str, str], refs: list[CaseRef]
) -> Dataset:
    """The Dataset of ``folder``: short name, targets (with unions), sorted cases, channel choice."""
    name = short_name(folder.name)
    channel, channel_name = choose_channel(modality)
    return Dataset(
        name=name,
        root=folder,
        kind=kind,
        targets=build_targets(name, labels),
        cases=_sorted_unique_cases(refs, folder),
        modality=modality,
        channel=channel,
        channel_name=channel_name,
    )


def load_msd_dataset(folder: Path) -> Dataset:
    """The MSD dataset in ``folder`` (``dataset.json`` + ``imagesTr/`` + ``labelsTr/``)."""
    source = folder / "dataset.json"
    spec = _read_json(source)
    labels = _parse_label_map(spec.get("labels"), source)
    modality = _parse_modality(spec.get("modality", spec.get("channel_names")), source)
    refs = _msd_cases(folder, short_name(folder.name), spec, source)
    return _make_dataset(folder, "msd", labels, modality, refs)


def load_paired_dataset(folder: Path) -> Dataset:
    """The paired-folder dataset in ``folder`` (``images/`` + ``masks/`` or ``labels/``)."""
    masks_dir = _paired_masks_dir(folder)
    if masks_dir is None:
        raise DataError(f"{folder}: not a paired folder (needs images/ and masks/ or labels/)")
    source = folder / "targets.json"
    spec = _read_json(source) if source.is_file() else {}
    labels = _parse_label_map(spec["labels"], source) if "labels" in spec else {"foreground": ()}
    modality = _parse_modality(spec.get("modality"), source)
    name = short_name(folder.name)
    refs = [CaseRef(name, c, i, m) for c, i, m in pair_files(folder / "images", masks_dir)]
    return _make_dataset(folder, "paired", labels, modality, refs)


def _dataset_in(folder: Path) -> Dataset | None:
    """The dataset stored directly in ``folder``, or None when it has neither layout."""
    if _is_msd(folder):
        return load_msd_dataset(folder)
    if _paired_masks_dir(folder) is not None:
        return load_paired_dataset(folder)
    return None


def discover_datasets(root: Path) -> list[Dataset]:
    """Every dataset in ``root``: ``root`` itself if it is a dataset folder, else each dataset folder
    directly inside it (other folders are ignored), sorted by short name then folder name.

    DataError when ``root`` holds no dataset, or when two folders get the same short name.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data root {root} is not a folder")
    own = _dataset_in(root)
    if own is not None:
        return [own]
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        ds = _dataset_in(child)
        if ds is not None:
            found.append(ds)
    if not found:
        raise DataError(
            f"no dataset found in {root}: expected an MSD folder (dataset.json, imagesTr/, labelsTr/) or a "
            f"paired folder (images/ and masks/ or labels/), either {root} itself or folders directly inside it"
        )
    by_name: dict[str, Dataset] = {}
    for ds in found:
        if ds.name in by_name:
            raise DataError(
                f"{by_name[ds.name].root} and {ds.root} both map to the dataset name {ds.name!r}; "
                f"keep one of them under {root} or point at each separately"
            )
        by_name[ds.name] = ds
    return [by_name[k] for k in sorted(by_name)]


# --------------------------------------------------------------------------- loading


def _load_nifti(path: Path):
    """The nibabel image at ``path`` (header read); DataError naming the file if unreadable."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:  # nibabel, gzip, zlib and OS errors all mean the same thing here
        raise DataError(f"cannot read {path} as NIfTI: {type(exc).__name__}: {exc}") from None
    if len(shape) < 2 or min(shape) == 0:
        raise DataError(f"{path}: unusable volume shape {shape}")
    return img


def _read_array(img, path: Path, index: tuple | None = None, unscaled: bool = False) -> np.ndarray:
    """The voxel data of ``img`` (``index`` of it; raw stored values when ``unscaled``)."""
    try:
        proxy = img.dataobj
        if unscaled and hasattr(proxy, "get_unscaled"):
            data = np.asarray(proxy.get_unscaled())
            return data[index] if index is not None else data
        return np.asarray(proxy[index] if index is not None else proxy)
    except Exception as exc:
        raise DataError(f"cannot read the voxel data of {path}: {type(exc).__name__}: {exc}") from None


def _extra_axes(shape: tuple[int, ...], path: Path, role: str) -> tuple[int | None, int]:
    """(position among axes 3+ of the one non-singleton extra axis or None, its size)."""
    extra = shape[3:]
    big = [k for k, s in enumerate(extra) if s != 1]
    if len(big) > 1:
        raise DataError(f"{path}: {role} of shape {shape} has more than one non-spatial axis")
    return (big[0], extra[big[0]]) if big else (None, 1)


def _read_image(img, path: Path, channel: int) -> tuple[np.ndarray, int | None]:
    """(3-D image data, channel taken or None): extra singleton axes squeezed, 4-D → ``channel``."""
    shape = tuple(int(s) for s in img.shape)
    if len(shape) < 3:
        return _real(_read_array(img, path).reshape(shape + (1,) * (3 - len(shape))), path), None
    pos, size = _extra_axes(shape, path, "image")
    if pos is not None and not 0 <= channel < size:
        raise DataError(f"{path}: image of shape {shape} has no channel {channel}")
    extra = tuple(channel if k == pos else 0 for k in range(len(shape) - 3))
    data = _read_array(img, path, (slice(None),) * 3 + extra)
    return _real(data, path), (channel if pos is not None else None)


def _real(data: np.ndarray, path: Path) -> np.ndarray:
    """``data`` in native byte order; DataError when it is not a real-number (or bool) array."""
    if data.dtype.kind not in "biuf":
        raise DataError(f"{path}: image data type {data.dtype} is not a real number type")
    return data if data.dtype.isnative else data.astype(data.dtype.newbyteorder("="))


def _read_label(img, path: Path) -> tuple[np.ndarray, float, float]:
    """(3-D raw stored label data, scl_slope, scl_inter); a 4-D label is a DataError."""
    shape = tuple(int(s) for s in img.shape)
    if len(shape) > 3 and _extra_axes(shape, path, "label")[0] is not None:
        raise DataError(f"{path}: label of shape {shape} is 4-D; a label volume must be 3-D")
    data = _read_array(img, path, unscaled=True)
    data = data.reshape(shape[:3] + (1,) * (3 - len(shape)))
    slope = float(getattr(img.dataobj, "slope", 1.0))
    inter = float(getattr(img.dataobj, "inter", 0.0))
    return data, slope, inter


def integer_labels(raw: np.ndarray, path: Path) -> np.ndarray:
    """The label values as the smallest unsigned integer array that holds them.

    ``raw`` is the stored data, read without the header's scale factors (SPEC §1: the raw data, not
    a scaled float; :func:`load_case` records any scl_slope/scl_inter it ignored). DataError for
    non-numeric data, values that are not whole numbers within 1e-3 (including NaN/inf), and
    negative values.
    """
    if raw.dtype.kind not in "biuf":
        raise DataError(f"{path}: label data type {raw.dtype} is not numeric")
    if raw.dtype.kind in "biu":
        values = raw
    else:
        values = raw.astype(np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"{path}: label contains NaN or infinite values")
        rounded = np.rint(values)
        off = np.abs(values - rounded) > LABEL_TOLERANCE
        if off.any():
            raise DataError(
                f"{path}: label values must be whole numbers (within {LABEL_TOLERANCE:g}); found "
                f"{int(off.sum())} voxels such as {float(values[off][0]):g}"
            )
        values = rounded
    lo, hi = (int(values.min()), int(values.max())) if values.size else (0, 0)
    if lo < 0:
        raise DataError(f"{path}: label contains negative values (minimum {lo})")
    return values.astype(np.min_scalar_type(hi), copy=False)


def label_values(label: np.ndarray) -> tuple[int, ...]:
    """The sorted distinct values of a non-negative integer label volume."""
    if label.size and label.dtype.kind in "bu" and label.dtype.itemsize <= 2:
        return tuple(int(v) for v in np.flatnonzero(np.bincount(label.ravel())))
    return tuple(int(v) for v in np.unique(label))


def _canonical(data: np.ndarray, affine: np.ndarray, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(data, affine) reoriented to the closest canonical (RAS+) orientation, as
    ``nibabel.as_closest_canonical`` does, but on the array we give it (so a label stays unscaled)."""
    ornt = nio.io_orientation(affine)
    if np.isnan(ornt).any():
        raise DataError(f"{path}: affine {_fmt_affine(affine)} is degenerate (a voxel axis of size 0?)")
    if np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]]):
        return data, affine
    out = np.ascontiguousarray(nio.apply_orientation(data, ornt))
    return out, affine @ nio.inv_ornt_aff(ornt, data.shape[:3])


def _fmt_affine(affine: np.ndarray) -> str:
    return np.array2string(np.asarray(affine)[:3], precision=4, suppress_small=True, separator=", ").replace("\n", "")


def _axcodes(affine: np.ndarray) -> str:
    return "".join(c or "?" for c in nib.aff2axcodes(affine))


def case_fingerprint(dataset: Dataset, ref: CaseRef) -> dict[str, str] | None:
    """What a case's rows were computed from: SHA-256 of its image and label files, and of the
    dataset's reading of them (targets and their label values, the image channel). A resumed run
    reuses rows only when this is unchanged; None when either file cannot be read."""
    reading = json.dumps({"targets": [[t.name, list(t.labels)] for t in dataset.targets],
                          "channel": dataset.channel, "modality": dataset.modality}, sort_keys=True)
    try:
        return {"image": sha256_file(ref.image), "label": sha256_file(ref.label),
                "dataset": hashlib.sha256(reading.encode()).hexdigest()}
    except OSError:
        return None


def load_case(dataset: Dataset, ref: CaseRef) -> LoadedCase:
    """``ref`` loaded as SPEC §1 says: image and label reoriented to the closest RAS orientation,
    extra singleton axes squeezed, a 4-D image reduced to ``dataset.channel``, the label checked to
    be a non-negative whole-number volume on exactly the image's grid.

    DataError (naming the file or both files) on any input that cannot be used as it is.
    """
    img_nii, lab_nii = _load_nifti(ref.image), _load_nifti(ref.label)
    image, channel = _read_image(img_nii, ref.image, dataset.channel)
    raw_label, slope, inter = _read_label(lab_nii, ref.label)
    label = integer_labels(raw_label, ref.label)
    image, img_aff = _canonical(image, img_nii.affine, ref.image)
    label, lab_aff = _canonical(label, lab_nii.affine, ref.label)
    same_shape = image.shape == label.shape
    if not same_shape or not np.allclose(img_aff, lab_aff, rtol=0.0, atol=AFFINE_TOLERANCE):
        raise DataError(
            "image and label do not describe the same grid (compared after reorientation to RAS): "
            f"image {ref.image} has shape {image.shape} and affine {_fmt_affine(img_aff)}; "
            f"label {ref.label} has shape {label.shape} and affine {_fmt_affine(lab_aff)}"
        )
    spacing = tuple(round(float(s), 6) for s in nib.affines.voxel_sizes(img_aff))
    meta = {
        "image": str(ref.image),
        "label": str(ref.label),
        "original_shape": tuple(int(s) for s in img_nii.shape),
        "label_original_shape": tuple(int(s) for s in lab_nii.shape),
        "shape": tuple(int(s) for s in image.shape),
        "channel": channel,
        "channel_name": dataset.channel_name if channel is not None else dataset.modality.get("0"),
        "orientation": _axcodes(img_nii.affine),
        "label_orientation": _axcodes(lab_nii.affine),
        "image_dtype": str(image.dtype),
        "label_scaling": None if (slope, inter) == (1.0, 0.0) else (slope, inter),
        "label_values": label_values(label),
        "spacing": spacing,
    }
    return LoadedCase(ref, image, label, spacing, img_aff, meta)
