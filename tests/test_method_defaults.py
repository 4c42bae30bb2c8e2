"""Every method's defaults are valid settings, on the dataset it is offered first; the defaults chosen
by measurement (bench/method_defaults.py) still learn when trained briefly."""
import pytest
import torch

from engine.config import DEFAULTS, TrainConfig
from engine.data import load_dataset
from engine.encoders import ENCODERS, build_encoder
from engine.methods import METHODS, DataInfo
from engine.params import resolve

# what a method's ``defaults`` may set: the generic settings it prefers, and where it trains first
DEFAULT_KEYS = set(DEFAULTS) | {"encoder_params", "dataset"}


def default_dataset(cls) -> str:
    return cls.defaults.get("dataset", TrainConfig().dataset)


@pytest.fixture(scope="module")
def datasets():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_dataset(name, train_size=256, test_size=64, seed=0) if name != "digits" \
                else load_dataset(name, seed=0)
        return cache[name]

    return get


@pytest.mark.parametrize("name", METHODS.names())
def test_defaults_pass_the_registry_checks(name, datasets):
    cls = METHODS.get(name)
    assert set(cls.defaults) <= DEFAULT_KEYS, set(cls.defaults) - DEFAULT_KEYS
    for p in cls.params:  # each default is a value its own parameter accepts, unchanged
        assert p.parse(p.default) == p.default, p.name
    config = TrainConfig(method=name, dataset=default_dataset(cls)).resolved()  # every value checked
    encoder_cls = ENCODERS.get(config.encoder)
    resolve(encoder_cls.params, config.encoder_params)
    ds = datasets(config.dataset)
    info = DataInfo(ds.num_classes, tuple(int(c) for c in ds.class_counts()), ds.channels, ds.image_size,
                    ds.labelled, ds.name)
    encoder = build_encoder(config.encoder, ds.channels, ds.image_size, config.embedding_dim,
                            **resolve(encoder_cls.params, config.encoder_params))
    method = cls(encoder, info, **resolve(cls.params, {}))  # builds on its first dataset
    assert method.steps_per_epoch(len(ds.train), config.batch_size) >= 1
