"""Device options of the SAM adapters (issue 4 item 4): precision, compile, encoder batching,
points_per_batch and peak memory — all on the CPU with the tiny random-init SAM.

The real ``torch.compile`` of even the tiny encoder takes over a minute on 2 CPU cores (inductor
builds C++), so it runs only in the ``slow`` test; the fast tests check the wiring and the failure
messages with a stand-in ``torch.compile``.
"""

from __future__ import annotations

import json
import resource

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator

from samradbench.config import SamConfig
from samradbench.errors import ConfigError
from samradbench.generators import sam as sam_module
from samradbench.generators.sam import (
    LoadedSam,
    SamAutoGenerator,
    SamSeededGenerator,
    build_sam_generators,
    image_key,
    load_sam,
)

H, W = 64, 80


def tiny_cfg(**kw) -> SamConfig:
    return SamConfig(random_init="vit_tiny", device="cpu", points_per_side=4, **kw)


def _slices(n: int = 5) -> list[tuple[np.ndarray, np.ndarray]]:
    """n different smooth synthetic slices (gradient, a bright disc that moves) and their discs."""
    out = []
    rr, cc = np.indices((H, W))
    for k in range(n):
        disc = (rr - 30 - k) ** 2 + (cc - 40 + 2 * k) ** 2 <= (12 - k) ** 2
        grey = (cc * 2 + disc * (120 + 10 * k) + rr * k).astype(np.uint8)
        out.append((np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2)), disc))
    return out


@pytest.fixture(scope="module")
def tiny():
    return load_sam(tiny_cfg())


@pytest.fixture
def encoder_calls(tiny):
    """Batch sizes of every image-encoder forward pass on the shared tiny model."""
    calls: list[int] = []
    handle = tiny.model.image_encoder.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    yield calls
    handle.remove()


# ------------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"precision": "fp16"}, r"unknown precision 'fp16'; expected one of fp32, bf16"),
        ({"encoder_batch": 0}, r"encoder_batch must be ≥ 1, got 0"),
        ({"points_per_batch": 0}, r"points_per_batch must be ≥ 1, got 0"),
        ({"compile": "yes"}, r"compile must be True or False"),
    ],
)
def test_bad_device_options_are_config_errors_before_loading(tiny, monkeypatch, kw, message):
    cfg = tiny_cfg(**kw)
    for adapter in (SamAutoGenerator, SamSeededGenerator):
        with pytest.raises(ConfigError, match=message):
            adapter(tiny, cfg)
    with pytest.raises(ConfigError, match=message):
        load_sam(cfg)
    monkeypatch.setattr(sam_module, "load_sam", lambda *a, **k: pytest.fail("model loaded before the check"))
    with pytest.raises(ConfigError, match=message):
        build_sam_generators(cfg)


def test_device_options_are_in_the_described_config(tiny):
    d = SamAutoGenerator(tiny, tiny_cfg(precision="bf16", encoder_batch=4, points_per_batch=8)).describe()
    cfg = d["config"]
    assert (cfg["precision"], cfg["compile"], cfg["encoder_batch"], cfg["points_per_batch"]) == ("bf16", False, 4, 8)
    assert SamAutoGenerator(tiny, tiny_cfg()).describe()["config"]["precision"] == "fp32"
    json.dumps(d, allow_nan=False)


# ------------------------------------------------------------------------------------------- bf16


def test_bf16_runs_encoder_and_decoder_under_autocast_and_upscales_float32(tiny, monkeypatch):
    seen: dict[str, list] = {"encoder": [], "decoder": [], "postprocess": []}

    def hook(name):
        def record(mod, args, kwargs, out):
            seen[name].append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return record

    handles = [
        tiny.model.image_encoder.register_forward_hook(hook("encoder"), with_kwargs=True),
        tiny.model.mask_decoder.register_forward_hook(hook("decoder"), with_kwargs=True),
    ]
    real_postprocess = tiny.model.postprocess_masks

    def postprocess(masks, input_size, original_size):
        seen["postprocess"].append(masks.dtype)
        return real_postprocess(masks, input_size, original_size)

    monkeypatch.setattr(tiny.model, "postprocess_masks", postprocess)
    try:
        rgb, truth = _slices(1)[0]
        cfg = tiny_cfg(precision="bf16")
        for gen in (SamAutoGenerator(tiny, cfg), SamSeededGenerator(tiny, cfg)):
            p = gen.generate(rgb, truth)
            assert p.masks.dtype == np.bool_ and p.masks.ndim == 3 and p.masks.shape[1:] == (H, W)
            assert len(p.masks) >= 1 and p.encode_seconds > 0
    finally:
        for h in handles:
            h.remove()
    bf16 = (True, torch.bfloat16)
    assert seen["encoder"] == [bf16, bf16]
    assert seen["decoder"] and all(s == bf16 for s in seen["decoder"])
    assert seen["postprocess"] and all(dtype == torch.float32 for dtype in seen["postprocess"])


def test_fp32_runs_without_autocast(tiny):
    seen = []
    handle = tiny.model.mask_decoder.register_forward_hook(lambda *a: seen.append(torch.is_autocast_enabled("cpu")))
    try:
        SamAutoGenerator(tiny, tiny_cfg()).generate(*_slices(1)[0])
    finally:
        handle.remove()
    assert seen and not any(seen)


def test_bf16_prefetch_gives_float32_embeddings_and_the_same_masks_as_unbatched_bf16(tiny):
    slices = _slices(2)
    gen = SamAutoGenerator(tiny, tiny_cfg(precision="bf16", encoder_batch=2))
    gen.prefetch([rgb for rgb, _ in slices])
    assert all(e.features.dtype == torch.float32 for e in gen._prefetched.values())
    unbatched = SamAutoGenerator(tiny, tiny_cfg(precision="bf16"))
    for rgb, truth in slices:
        a, b = gen.generate(rgb, truth), unbatched.generate(rgb, truth)
        assert b.masks.dtype == np.bool_ and a.masks.shape == b.masks.shape
        assert (a.masks != b.masks).mean() <= 0.01  # bf16 rounding may differ per batch size


# ---------------------------------------------------------------------------------------- compile


def test_compile_replaces_the_encoder_once_and_warms_it_up(monkeypatch):
    compiled_modules, warmups = [], []

    class Recorded(torch.nn.Module):  # stands in for torch's OptimizedModule
        def __init__(self, module):
            super().__init__()
            self.inner, self.img_size = module, module.img_size

        def forward(self, x):
            warmups.append((tuple(x.shape), torch.is_autocast_enabled("cpu")))
            return self.inner(x)

    def fake_compile(module):
        compiled_modules.append(module)
        return Recorded(module)

    monkeypatch.setattr(torch, "compile", fake_compile)
    loaded = load_sam(tiny_cfg(compile=True, encoder_batch=3, precision="bf16"))
    assert len(compiled_modules) == 1 and type(compiled_modules[0]).__name__ == "ImageEncoderViT"
    assert warmups == [((1, 3, 256, 256), True), ((3, 3, 256, 256), True)]
    gen = SamAutoGenerator(loaded, tiny_cfg(compile=True, encoder_batch=3, precision="bf16"))
    p = gen.generate(*_slices(1)[0])
    assert len(warmups) == 3 and warmups[-1][0][0] == 1  # the slice went through the compiled encoder
    assert p.masks.dtype == np.bool_ and p.masks.shape[1:] == (H, W)


def test_compile_failing_at_first_call_is_a_config_error(monkeypatch):
    def broken_compile(module):
        def run(x):
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nlong traceback ...")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(ConfigError) as exc:
        load_sam(tiny_cfg(compile=True))
    assert str(exc.value) == (
        "compile=True: torch.compile of the image encoder failed at its first call (batch 1, fp32 on cpu): "
        "RuntimeError: InvalidCxxCompiler: No working C++ compiler found; run without compile (--compile off)"
    )


def test_compile_unavailable_is_a_config_error(monkeypatch):
    def unavailable(module):
        raise RuntimeError("Dynamo is not supported on Python 3.13+")

    monkeypatch.setattr(torch, "compile", unavailable)
    with pytest.raises(ConfigError, match=r"compile=True: torch.compile is unavailable here \(RuntimeError: Dynamo"):
        load_sam(tiny_cfg(compile=True))
    monkeypatch.delattr(torch, "compile")
    with pytest.raises(ConfigError, match=r"has no torch.compile"):
        load_sam(tiny_cfg(compile=True))


def test_compile_off_leaves_the_encoder_alone(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda m: pytest.fail("compiled without compile=True"))
    assert type(load_sam(tiny_cfg()).model.image_encoder).__name__ == "ImageEncoderViT"


@pytest.mark.slow
def test_real_torch_compile_of_the_tiny_encoder_gives_the_same_masks():
    """Real inductor compilation (over a minute on 2 CPU cores): same masks as the eager model."""
    cfg = tiny_cfg(compile=True)
    compiled = SamAutoGenerator(load_sam(cfg), cfg)
    eager = SamAutoGenerator(load_sam(tiny_cfg()), tiny_cfg())
    assert type(compiled.loaded.model.image_encoder).__name__ == "OptimizedModule"
    for rgb, truth in _slices(2):
        a, b = compiled.generate(rgb, truth), eager.generate(rgb, truth)
        assert a.masks.shape == b.masks.shape and (a.masks != b.masks).mean() <= 1e-3


# ---------------------------------------------------------------------------------- encoder batch


@pytest.mark.parametrize("adapter", [SamAutoGenerator, SamSeededGenerator])
def test_encoder_batch_gives_the_masks_of_single_slice_encoding(tiny, encoder_calls, adapter):
    """Five slices with encoder_batch=4: two encoder passes (4 + 1), no encoding inside generate().

    Batching is not bitwise: oneDNN/MKL block a batch-4 matmul differently from batch 1, so the
    embeddings differ by ~1e-6 (measured 1.4e-6 at most; features are O(1)). A mask pixel can only
    change where the decoder's logit is within ~1e-5 of the 0 threshold, so masks are required to
    agree on ≥ 99.9 % of pixels (they were identical on every slice when measured).
    """
    slices = _slices(5)
    batched = adapter(tiny, tiny_cfg(encoder_batch=4))
    single = adapter(tiny, tiny_cfg())
    batched.prefetch([rgb for rgb, _ in slices])
    assert encoder_calls == [4, 1]
    expected = []
    for rgb, truth in slices:
        expected.append(single.generate(rgb, truth).masks)
    encoder_calls.clear()
    for (rgb, truth), want in zip(slices, expected):
        got = batched.generate(rgb, truth)
        assert got.masks.dtype == np.bool_ and got.masks.shape == want.shape
        assert (got.masks != want).mean() <= 1e-3
    assert encoder_calls == []  # every slice came from the prefetch


def test_prefetched_embeddings_match_set_image(tiny):
    from segment_anything import SamPredictor

    slices = _slices(4)
    gen = SamAutoGenerator(tiny, tiny_cfg(encoder_batch=4))
    gen.prefetch([rgb for rgb, _ in slices])
    predictor = SamPredictor(tiny.model)
    for rgb, _ in slices:
        predictor.set_image(rgb)
        entry = gen._prefetched[image_key(rgb)]
        assert entry.original_size == predictor.original_size == (H, W)
        assert entry.input_size == predictor.input_size
        torch.testing.assert_close(entry.features, predictor.features, atol=1e-4, rtol=1e-4)


def test_prefetch_encode_seconds_are_the_batch_share_charged_once(tiny, encoder_calls):
    slices = _slices(3)
    rgbs = [rgb for rgb, _ in slices]
    gen = SamSeededGenerator(tiny, tiny_cfg(encoder_batch=2))
    gen.prefetch(rgbs + [rgbs[0].copy()])  # a duplicate slice is encoded once
    assert encoder_calls == [2, 1]
    entries = [gen._prefetched[image_key(rgb)] for rgb in rgbs]
    assert entries[0].seconds == entries[1].seconds > 0 and [e.batch_size for e in entries] == [2, 2, 1]
    rgb, truth = slices[0]
    first = gen.generate(rgb, truth)
    assert first.encode_seconds == entries[0].seconds
    assert first.info["encoder_batch"] == 2 and first.info["prefetch_peak_memory_bytes"] > 0
    again = gen.generate(rgb, truth)  # e.g. a second target on the same slice: no encoder ran
    assert again.encode_seconds == 0.0
    assert np.array_equal(first.masks, again.masks)
    assert encoder_calls == [2, 1]


def test_a_slice_not_prefetched_is_encoded_as_usual_and_prefetch_replaces_the_store(tiny, encoder_calls):
    slices = _slices(3)
    gen = SamAutoGenerator(tiny, tiny_cfg(encoder_batch=2))
    gen.prefetch([slices[0][0]])
    gen.generate(*slices[1])
    assert encoder_calls == [1, 1]
    p = gen.generate(*slices[0])
    assert encoder_calls == [1, 1] and p.info["encoder_batch"] == 1
    gen.prefetch([slices[2][0]])
    assert image_key(slices[0][0]) not in gen._prefetched
    gen.prefetch([])
    assert gen._prefetched == {}


def test_prefetch_checks_its_slices(tiny):
    gen = SamAutoGenerator(tiny, tiny_cfg(encoder_batch=2))
    with pytest.raises(ConfigError, match="sam-auto needs an H×W×3 uint8 slice"):
        gen.prefetch([np.zeros((H, W), np.uint8)])


# -------------------------------------------------------------------------------- points per batch


@pytest.mark.parametrize(("ppb", "batches"), [(5, [5, 5, 5, 1]), (16, [16]), (64, [16])])
def test_points_per_batch_is_honoured(tiny, ppb, batches):
    """16 grid points (4 × 4) reach the mask decoder in batches of at most points_per_batch."""
    seen = []
    handle = tiny.model.mask_decoder.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(kwargs["sparse_prompt_embeddings"].shape[0]), with_kwargs=True
    )
    try:
        SamAutoGenerator(tiny, tiny_cfg(points_per_batch=ppb)).generate(*_slices(1)[0])
    finally:
        handle.remove()
    assert seen == batches


# ---------------------------------------------------------------------------------- peak memory


def test_cpu_peak_memory_is_the_process_peak_rss(tiny):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    p = SamAutoGenerator(tiny, tiny_cfg()).generate(*_slices(1)[0])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert isinstance(p.info["peak_memory_bytes"], int)
    assert before <= p.info["peak_memory_bytes"] <= after


def test_cuda_peak_memory_is_reset_per_call_and_read_for_the_device(tiny, monkeypatch):
    """A stand-in 'cuda' device (the model stays on the CPU): reset at the start of each generate(),
    max_memory_allocated read for that device at its end."""
    log = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: log.append(("reset", device)))

    def max_allocated(device=None):
        log.append(("max", device))
        return 12345

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", max_allocated)
    fake = LoadedSam(tiny.model, "cuda:0", dict(tiny.description, device="cuda:0"))
    rgb, truth = _slices(1)[0]
    for adapter in (SamAutoGenerator, SamSeededGenerator):
        log.clear()
        p = adapter(fake, tiny_cfg()).generate(rgb, truth)
        assert p.info["peak_memory_bytes"] == 12345
        assert log == [("reset", "cuda:0"), ("max", "cuda:0")]
    log.clear()
    p = SamSeededGenerator(fake, tiny_cfg()).generate(rgb, np.zeros_like(truth))
    assert p.info == {"n_seeds": 0, "peak_memory_bytes": 12345} and log == [("reset", "cuda:0"), ("max", "cuda:0")]


def test_oom_fallback_still_records_peak_memory(tiny, monkeypatch):
    real_generate = SamAutomaticMaskGenerator.generate

    def generate(self, image):
        if self.points_per_batch > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stub)")
        return real_generate(self, image)

    monkeypatch.setattr(SamAutomaticMaskGenerator, "generate", generate)
    p = SamAutoGenerator(tiny, tiny_cfg(points_per_batch=16)).generate(*_slices(1)[0])
    assert p.info["points_per_batch"] == 8 and p.info["peak_memory_bytes"] > 0
