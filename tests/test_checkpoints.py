"""samradbench.checkpoints: reading, unwrapping, checking and strictly loading SAM weights.

Failure cases B17 (GPU-saved file on a CPU machine), B18 (model type vs weights) and B20 (wrapped /
"module."-prefixed checkpoints, strict loading) from shared/cases/failure-cases.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
import torch

from samradbench.checkpoints import (
    check_architecture,
    infer_architecture,
    load_state_dict,
    load_weights_strict,
)
from samradbench.errors import CheckpointError
from samradbench.fileio import sha256_file
from samradbench.generators.sam import build_tiny_sam

PATCH_KEY = "image_encoder.patch_embed.proj.weight"


@dataclass
class TrainingArgs:
    """A custom class saved next to the weights, as training scripts do: needs full unpickling."""

    lr: float = 1e-4


class StandIn(torch.nn.Module):
    """A tiny module whose only parameter is ``image_encoder.w`` (the B20 stand-in)."""

    def __init__(self) -> None:
        super().__init__()
        self.image_encoder = torch.nn.Module()
        self.image_encoder.w = torch.nn.Parameter(torch.zeros(4))


def _tiny_sam(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_tiny_sam()


def _assert_one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------------------------------ sha256


def test_sha256_file_matches_hashlib_of_the_bytes(tmp_path):
    data = bytes(range(256)) * 10_000  # 2.56 MB: several read chunks
    f = tmp_path / "w.pth"
    f.write_bytes(data)
    assert sha256_file(f) == hashlib.sha256(data).hexdigest()
    assert sha256_file(f, chunk_size=7) == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------- unwrapping (B20)


def test_plain_state_dict_round_trip(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "b.bias": torch.arange(5)}
    torch.save(sd, tmp_path / "plain.pth")
    loaded = load_state_dict(tmp_path / "plain.pth")
    assert list(loaded) == ["a.weight", "b.bias"]
    for k in sd:
        assert torch.equal(loaded[k], sd[k])
        assert loaded[k].device.type == "cpu"


def test_b20_model_container_with_module_prefix_loads_into_stand_in(tmp_path):
    t = torch.tensor([1.0, 2.0, 3.0, 4.0])
    ckpt = {
        "model": {"module.image_encoder.w": t},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.001}]},
        "epoch": 5,
    }
    torch.save(ckpt, tmp_path / "finetuned.pth")
    sd = load_state_dict(tmp_path / "finetuned.pth")
    assert list(sd) == ["image_encoder.w"]
    model = StandIn()
    load_weights_strict(model, sd, tmp_path / "finetuned.pth")
    assert torch.equal(model.image_encoder.w.detach(), t)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: {"state_dict": sd},
        lambda sd: {"model": sd, "epoch": 3},
        lambda sd: {"model_state_dict": sd, "optimizer_state_dict": {}},
        lambda sd: {"model": {"state_dict": sd}, "epoch": 3},  # nested once
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["state_dict", "model", "model_state_dict", "model.state_dict", "state_dict+module"],
)
def test_common_containers_are_unwrapped(tmp_path, wrap):
    sd = {"image_encoder.w": torch.ones(2), "mask_decoder.b": torch.zeros(3)}
    torch.save(wrap(sd), tmp_path / "c.pth")
    loaded = load_state_dict(tmp_path / "c.pth")
    assert sorted(loaded) == ["image_encoder.w", "mask_decoder.b"]


def test_b20_real_tiny_sam_round_trip_through_wrapper_and_prefix(tmp_path):
    source = _tiny_sam(seed=0)
    ckpt = {"model": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 5}
    torch.save(ckpt, tmp_path / "tiny.pth")
    target = _tiny_sam(seed=1)
    key = "mask_decoder.iou_prediction_head.layers.0.weight"
    assert not torch.equal(target.state_dict()[key], source.state_dict()[key])  # really different weights
    load_weights_strict(target, load_state_dict(tmp_path / "tiny.pth"), tmp_path / "tiny.pth")
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k


# ---------------------------------------------------------------------------- strict loading (B20)


def test_missing_and_unexpected_keys_are_listed_and_nothing_is_loaded():
    model = StandIn()
    sd = {"encoder.w": torch.ones(4), "decoder.b": torch.ones(1)}
    with pytest.raises(CheckpointError) as exc:
        load_weights_strict(model, sd, "/somewhere/ft.pth")
    text = _assert_one_line(exc)
    assert "ft.pth" in text
    assert "1 missing" in text and "image_encoder.w" in text
    assert "2 unexpected" in text and "encoder.w" in text and "decoder.b" in text
    assert torch.equal(model.image_encoder.w.detach(), torch.zeros(4))


def test_many_missing_keys_are_counted_and_only_the_first_few_shown():
    model = _tiny_sam(seed=0)
    full = model.state_dict()
    encoder_only = {k: v for k, v in full.items() if k.startswith("image_encoder.")}
    n_missing = len(full) - len(encoder_only)
    with pytest.raises(CheckpointError) as exc:
        load_weights_strict(model, encoder_only, "enc.pth")
    text = _assert_one_line(exc)
    assert f"{n_missing} missing" in text and "0 unexpected" in text
    shown = [k for k in full if k not in encoder_only and f"'{k}'" in text]
    assert 1 <= len(shown) <= 5 < n_missing


def test_shape_mismatch_is_reported_with_both_shapes():
    with pytest.raises(CheckpointError) as exc:
        load_weights_strict(StandIn(), {"image_encoder.w": torch.ones(7)}, "x.pth")
    text = _assert_one_line(exc)
    assert "image_encoder.w: (7,) vs model (4,)" in text


# ------------------------------------------------------------------------------ architecture (B18)


@pytest.mark.parametrize(
    ("width", "model_type", "message"),
    [
        (1280, "vit_b", "checkpoint sam_x.pth looks like vit_h (embedding dim 1280), model_type is vit_b"),
        (1024, "vit_b", "checkpoint sam_x.pth looks like vit_l (embedding dim 1024), model_type is vit_b"),
        (768, "vit_h", "checkpoint sam_x.pth looks like vit_b (embedding dim 768), model_type is vit_h"),
    ],
)
def test_b18_architecture_mismatch_is_one_line(width, model_type, message):
    sd = {PATCH_KEY: torch.empty(width, 3, 16, 16)}
    with pytest.raises(CheckpointError) as exc:
        check_architecture(sd, model_type, "/models/sam_x.pth")
    assert _assert_one_line(exc) == message


@pytest.mark.parametrize(("width", "arch"), [(768, "vit_b"), (1024, "vit_l"), (1280, "vit_h")])
def test_b18_matching_architecture_is_inferred_and_accepted(width, arch):
    sd = {PATCH_KEY: torch.empty(width, 3, 16, 16)}
    assert infer_architecture(sd) == arch
    check_architecture(sd, arch, "ok.pth")  # no error


def test_infer_architecture_refuses_unknown_width_and_missing_key():
    with pytest.raises(CheckpointError, match="embedding dim 512"):
        infer_architecture({PATCH_KEY: torch.empty(512, 3, 16, 16)})
    with pytest.raises(CheckpointError, match=r"no image_encoder\.patch_embed\.proj\.weight.*'foo'"):
        infer_architecture({"foo": torch.ones(1)}, "m.pth")


# --------------------------------------------------------------------------- unreadable files


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope\.pth not found"):
        load_state_dict(tmp_path / "nope.pth")


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_truncated_file_is_one_clear_error(tmp_path, zip_format):
    full = tmp_path / "full.pth"
    torch.save({"w": torch.randn(64, 64)}, full, _use_new_zipfile_serialization=zip_format)
    cut = tmp_path / "sam_cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError) as exc:
        load_state_dict(cut)
    text = _assert_one_line(exc)
    assert "sam_cut.pth" in text and "truncated or corrupt" in text
    assert exc.value.__cause__ is None and exc.value.__suppress_context__  # no torch traceback chained


def test_empty_file(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty\.pth is empty \(0 bytes\)"):
        load_state_dict(tmp_path / "empty.pth")


def test_html_page_saved_as_pth(tmp_path):
    page = tmp_path / "sam_vit_b_01ec64.pth"
    page.write_text("\n  <!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Log in</body></html>\n")
    with pytest.raises(CheckpointError) as exc:
        load_state_dict(page)
    text = _assert_one_line(exc)
    assert "sam_vit_b_01ec64.pth is an HTML/XML page" in text


def test_unsafe_pickle_is_refused_unless_opted_in(tmp_path):
    sd = {"image_encoder.w": torch.ones(3)}
    torch.save({"model": sd, "args": TrainingArgs()}, tmp_path / "trained.pth")
    with pytest.raises(CheckpointError) as exc:
        load_state_dict(tmp_path / "trained.pth")
    text = _assert_one_line(exc)
    assert "trained.pth" in text and "TrainingArgs" in text
    assert "allow_unsafe_pickle=True" in text and "--sam-allow-unsafe-pickle" in text
    loaded = load_state_dict(tmp_path / "trained.pth", allow_unsafe_pickle=True)
    assert list(loaded) == ["image_encoder.w"] and torch.equal(loaded["image_encoder.w"], torch.ones(3))


def test_whole_module_pickled_unwraps_to_its_state_dict_when_opted_in(tmp_path):
    model = StandIn()
    torch.save(model, tmp_path / "module.pth")
    with pytest.raises(CheckpointError, match="allow_unsafe_pickle=True"):
        load_state_dict(tmp_path / "module.pth")
    assert list(load_state_dict(tmp_path / "module.pth", allow_unsafe_pickle=True)) == ["image_encoder.w"]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ([torch.ones(2)], "holds a list, expected a dict of tensors"),
        (torch.ones(2), "holds a Tensor, expected a dict of tensors"),
        ({}, "holds an empty dict"),
        ({"epoch": 5, "lr": 0.1}, "entries ['epoch', 'lr'] are not tensors"),
    ],
    ids=["list", "tensor", "empty", "no-tensors"],
)
def test_non_state_dict_contents(tmp_path, obj, expected):
    torch.save(obj, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError) as exc:
        load_state_dict(tmp_path / "odd.pth")
    text = _assert_one_line(exc)
    assert "odd.pth" in text and expected in text


# ----------------------------------------------------------------------------- CPU mapping (B17)


def test_b17_checkpoint_saved_on_cuda_loads_on_cpu(tmp_path, monkeypatch):
    """B17: a file whose storages are tagged ``cuda:0`` must load on a CPU-only machine.

    No GPU is needed to make such a file: ``torch.save`` records each storage's device through
    ``torch.serialization.location_tag``, which is patched here to say ``cuda:0`` (exactly the tag a
    GPU-saved checkpoint carries). Plain ``torch.load`` on it fails without CUDA; ``load_state_dict``
    must pass ``map_location="cpu"``, which is also checked directly by recording torch.load's kwargs.
    """
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save({"model": {"image_encoder.w": torch.arange(4.0)}}, tmp_path / "gpu.pth")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pth", weights_only=True)  # the failure B17 reports

    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    sd = load_state_dict(tmp_path / "gpu.pth")
    assert calls == [{"map_location": "cpu", "weights_only": True}]
    assert sd["image_encoder.w"].device.type == "cpu"
    assert torch.equal(sd["image_encoder.w"], torch.arange(4.0))

