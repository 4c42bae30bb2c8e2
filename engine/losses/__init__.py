"""Losses: small ``nn.Module`` s with typed keyword arguments, registered by name.

A loss module registers its class with ``@LOSSES.register(name)``; this package imports every module
it holds, so a new loss is listed without editing this file. Methods build their loss from here.
"""
from __future__ import annotations

from torch import nn

from engine.registry import Registry, import_submodules

LOSSES: Registry[type[nn.Module]] = Registry("loss")

import_submodules(__name__, __path__)
