"""Transfer fine-tuning's mechanics: batch norm stays as pretrained, the head warms up alone first,
the optimiser groups (smaller backbone rate, no weight decay on 1-d parameters). Whether its defaults
beat frozen features is measured by bench/transfer.py (minutes of CPU), not here."""
import pytest
import torch

from engine.config import TrainConfig
from engine.encoders import build_encoder, embed
from engine.methods import METHODS, DataInfo
from engine.params import resolve

INFO = DataInfo(3, (4, 4, 4), 1, (16, 16), True, "digits")


def transfer(**params):
    torch.manual_seed(0)
    encoder = build_encoder("efficientnet-lite0", 1, (16, 16), input_size=32, random_init=True)
    cls = METHODS.get("transfer")
    return cls(encoder, INFO, **resolve(cls.params, params))


def batch_norms(method):
    return method.encoder.batch_norm_layers()


def step(method, optimizer, images, labels):
    out = method.training_step(images, labels)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()


def test_batch_norm_keeps_its_pretrained_statistics_while_fine_tuning():
    method = transfer()
    layers = batch_norms(method)
    assert layers and all(not p.requires_grad for layer in layers for p in layer.parameters())
    method.train()
    assert all(not layer.training for layer in layers) and method.encoder.features.training
    before = [layer.running_mean.clone() for layer in layers]
    optimizer = torch.optim.AdamW(method.parameter_groups(1e-3), lr=1e-3)
    method.before_step(10, 10)  # past the warm-up: the backbone trains
    step(method, optimizer, torch.rand(8, 1, 16, 16), torch.arange(8) % 3)
    embed(method.encoder, torch.zeros(4, 1, 16, 16, dtype=torch.uint8))  # eval, then back to training
    assert all(not layer.training for layer in layers)
    assert all(torch.equal(b, layer.running_mean) for b, layer in zip(before, layers))


def test_batch_norm_train_re_estimates_the_statistics():
    method = transfer(batch_norm="train")
    layers = batch_norms(method)
    method.train()
    method.before_step(10, 10)
    assert all(layer.training for layer in layers)
    before = layers[0].running_mean.clone()
    method.training_step(torch.rand(8, 1, 16, 16), torch.arange(8) % 3)
    assert not torch.equal(before, layers[0].running_mean)


def test_the_head_warms_up_alone_then_everything_fine_tunes():
    method = transfer(head_warmup=0.5)
    method.train()
    optimizer = torch.optim.AdamW(method.parameter_groups(1e-3), lr=1e-3)
    conv = method.encoder.features.net.conv_stem.weight
    images, labels = torch.rand(8, 1, 16, 16), torch.arange(8) % 3
    for s in range(5):  # steps 0..4 of 10: the warm-up
        method.before_step(s, 10)
        assert not conv.requires_grad and method.head.weight.requires_grad
        head, stem = method.head.weight.clone(), conv.clone()
        step(method, optimizer, images, labels)
        assert torch.equal(stem, conv) and not torch.equal(head, method.head.weight)
    method.before_step(5, 10)
    assert conv.requires_grad
    assert all(not p.requires_grad for layer in batch_norms(method) for p in layer.parameters())
    stem = conv.clone()
    step(method, optimizer, images, labels)
    assert not torch.equal(stem, conv)


def test_a_resumed_run_enters_its_phase_at_once():
    late, early = transfer(head_warmup=0.5), transfer(head_warmup=0.5)
    late.before_step(7, 10)
    early.before_step(2, 10)
    conv = "features.net.conv_stem.weight"
    assert dict(late.encoder.named_parameters())[conv].requires_grad
    assert not dict(early.encoder.named_parameters())[conv].requires_grad
    none = transfer(head_warmup=0.0)
    none.before_step(0, 10)
    assert dict(none.encoder.named_parameters())[conv].requires_grad


def test_parameter_groups_backbone_rate_and_no_decay_on_1d():
    method = transfer(backbone_lr_scale=0.2)
    groups = method.parameter_groups(1e-2)
    grouped = [p for g in groups for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})  # each parameter once
    backbone = {id(p) for p in method.encoder.backbone_parameters()}
    head = {id(p) for p in method.head.parameters()}
    bn = {id(p) for layer in batch_norms(method) for p in layer.parameters()}
    assert {id(p) for p in grouped} == (backbone - bn) | head  # frozen batch norm: not optimised
    for g in groups:
        ids = {id(p) for p in g["params"]}
        assert g["lr"] == pytest.approx(2e-3 if ids <= backbone else 1e-2)
        assert (g.get("weight_decay") == 0.0) == all(p.ndim == 1 for p in g["params"])
    # batch norm that trains: its scales and shifts are the backbone's 1-d parameters, without decay
    training = transfer(batch_norm="train")
    bn = {id(p) for layer in batch_norms(training) for p in layer.parameters()}
    assert any(g.get("weight_decay") == 0.0 and {id(p) for p in g["params"]} == bn
               for g in training.parameter_groups(1e-2))
    frozen = transfer(freeze=True)
    assert [{id(p) for p in g["params"]} for g in frozen.parameter_groups(1e-2)] == [
        {id(p) for p in frozen.head.parameters()}]


def test_transfer_records_its_parameters_and_prefers_96_px():
    method = transfer(head_warmup=0.25)
    assert method.hparams == {"freeze": False, "backbone_lr_scale": 0.1, "head_warmup": 0.25,
                              "batch_norm": "frozen"}
    config = TrainConfig(method="transfer").resolved()
    assert config.encoder == "efficientnet-lite0" and config.encoder_params == {"input_size": 96}
    # an encoder you bring decides its own input size
    assert TrainConfig(method="transfer", encoder="timm:resnet18").resolved().encoder_params == {}
