"""Every preset is a valid starting point: its configuration resolves and its encoder builds."""
import pytest

from engine.cli import build_parser, config_from_args
from engine.encoders import ENCODERS, build_encoder
from engine.presets import PRESETS

SHAPES = {"digits": (1, (8, 8)), "fashion-mnist": (1, (28, 28)), "painted-shapes": (3, (32, 32))}


def config_of(*argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_resolves_and_builds_its_encoder(name):
    cfg = config_of("--preset", name)
    assert cfg.method == PRESETS[name]["method"] and cfg.dataset == PRESETS[name]["dataset"]
    if ENCODERS.get(cfg.encoder).pretrained:
        return  # its weights come from a package or the network: built by the transfer tests
    channels, size = SHAPES[cfg.dataset]
    encoder = build_encoder(cfg.encoder, channels, size, cfg.embedding_dim, **cfg.encoder_params)
    assert encoder.embedding_dim == cfg.embedding_dim


def test_self_supervised_presets_probe_the_pooled_features_and_flags_win():
    assert config_of("--preset", "simclr-fashion-gpu").encoder_params == {"neck": "none", "widths": "64,128,256"}
    # another encoder by flag: the preset's settings it does not take are left out, the others kept
    assert config_of("--preset", "simclr-fashion-gpu", "--encoder", "resnet18",
                     "--embedding-dim", "512").encoder_params == {"neck": "none"}
    cfg = config_of("--preset", "simclr-fashion-cpu", "--neck", "dense")
    assert cfg.encoder_params == {"convs_per_block": 1, "neck": "dense"}
    assert PRESETS["simclr-fashion-cpu"]["encoder_params"]["neck"] == "none"  # the preset is unchanged


def _gpu_bench_jobs() -> dict:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_presets.py"
    spec = importlib.util.spec_from_file_location("gpu_presets", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.JOBS


@pytest.mark.parametrize("job", sorted(_gpu_bench_jobs()))
def test_every_gpu_bench_job_resolves_and_builds_its_encoder(job):
    """A GPU is lent for minutes: a job that would fail on its arguments must fail here instead."""
    cfg = config_of(*_gpu_bench_jobs()[job]).resolved()
    channels, size = SHAPES[cfg.dataset]
    encoder = build_encoder(cfg.encoder, channels, size, cfg.embedding_dim, **cfg.encoder_params)
    assert encoder.embedding_dim == cfg.embedding_dim


def test_no_time_limit_lifts_a_presets_limit_and_refuses_a_contradiction():
    assert config_of("--preset", "arc-fashion-cpu").time_limit == 3.0
    assert config_of("--preset", "arc-fashion-cpu", "--no-time-limit", "--epochs", "1").time_limit is None
    with pytest.raises(ValueError, match="--no-time-limit and --time-limit: give one of them"):
        config_of("--no-time-limit", "--time-limit", "2")
