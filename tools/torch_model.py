"""The spec's network (../shared/spec/network.md) as a PyTorch module, named so that a
fer-cbam checkpoint loads into it by its state_dict names with no conversion.

    from torch_model import load_checkpoint
    model, config = load_checkpoint("c.safetensors")          # f32, eval mode
    model = model.double()                                      # the f64 twin

The config comes from the checkpoint's safetensors header (`__metadata__["fer_cbam.config"]`,
the JSON written by src/model/checkpoint.rs). Besides the paper's network it builds the spec's
options ("Options beyond the paper's text"):

- `norm`: "none" (default) or "batch": BatchNorm2d(eps 1e-5, momentum 0.1) between each stage's
  conv and its ELU, named `stages.{i}.bn.*` (`num_batches_tracked` is I64);
- `init`: "pytorch" (default), "he", "glorot": only matters for `init_params`, a freshly made
  model (a loaded checkpoint brings its own values);
- `gate`: "multiply" (default, F' = M * F) or "residual" (F' = F + M * F), for both gates.

A config without these keys is the paper's network (none, pytorch, multiply).
"""

import json
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG_KEY = "fer_cbam.config"


class ChannelGate(nn.Module):
    """CBAM channel gate: M = sigmoid(mlp(avg_hw F) + mlp(max_hw F)), shared MLP C -> C/16 -> C."""

    def __init__(self, c, residual):
        super().__init__()
        h = max(1, c // 16)
        self.fc1 = nn.Linear(c, h)
        self.fc2 = nn.Linear(h, c)
        self.residual = residual
        self.last_gate = None

    def mlp(self, v):
        return self.fc2(F.relu(self.fc1(v)))

    def forward(self, x):
        flat = x.flatten(2)
        avg = flat.mean(dim=2)
        # max with indices routes the gradient to one element per plane (the first maximum, as
        # the spec and the engine do), where amax would split it between ties.
        mx = flat.max(dim=2).values
        m = torch.sigmoid(self.mlp(avg) + self.mlp(mx))[:, :, None, None]
        self.last_gate = m
        return x + m * x if self.residual else m * x


class SpatialGate(nn.Module):
    """CBAM spatial gate: M = sigmoid(conv7x7([max_c F', mean_c F'])), no batch norm."""

    def __init__(self, residual):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)
        self.residual = residual
        self.last_map = None

    def forward(self, x):
        s = torch.cat([x.max(dim=1, keepdim=True).values, x.mean(dim=1, keepdim=True)], dim=1)
        m = torch.sigmoid(self.conv(s))
        self.last_map = m
        return x + m * x if self.residual else m * x


class Cbam(nn.Module):
    def __init__(self, c, channel, spatial, residual):
        super().__init__()
        if channel:
            self.channel = ChannelGate(c, residual)
        if spatial:
            self.spatial = SpatialGate(residual)

    def forward(self, x):
        if hasattr(self, "channel"):
            x = self.channel(x)
        if hasattr(self, "spatial"):
            x = self.spatial(x)
        return x


class Stage(nn.Module):
    """conv 3x3 (padding 1, bias) -> [BN] -> ELU -> max pool 2x2 -> [channel gate] -> [spatial gate]."""

    def __init__(self, c_in, c_out, norm, channel, spatial, residual):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        if norm == "batch":
            self.bn = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)
        if channel or spatial:
            self.cbam = Cbam(c_out, channel, spatial, residual)

    def forward(self, x):
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        x = F.max_pool2d(F.elu(x, alpha=1.0), 2)
        if hasattr(self, "cbam"):
            x = self.cbam(x)
        return x


class Head(nn.Module):
    def __init__(self, c, hidden, classes, dropout):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, classes)
        self.dropout = dropout

    def forward(self, x, dropout=True):
        x = x.mean(dim=(2, 3))
        p = self.dropout if dropout else 0.0
        x = F.dropout(x, p, self.training)
        x = F.elu(self.fc1(x), alpha=1.0)
        x = F.dropout(x, p, self.training)
        return self.fc2(x)


def options(config):
    """(norm, init, gate) of a config dict, with the spec's defaults for missing keys."""
    norm = config.get("norm", "none")
    init = config.get("init", "pytorch")
    gate = config.get("gate", "multiply")
    if norm not in ("none", "batch"):
        raise ValueError(f"config: norm must be none or batch, got {norm!r}")
    if init not in ("pytorch", "he", "glorot"):
        raise ValueError(f"config: init must be pytorch, he or glorot, got {init!r}")
    if gate not in ("multiply", "residual"):
        raise ValueError(f"config: gate must be multiply or residual, got {gate!r}")
    return norm, init, gate


class FerCbam(nn.Module):
    """The whole network of the spec for one config dict (the checkpoint's JSON)."""

    def __init__(self, config):
        super().__init__()
        self.config = dict(config)
        attention = config.get("attention", "full")
        if attention not in ("full", "none", "channel", "spatial"):
            raise ValueError(f"config: unknown attention variant {attention!r}")
        channel = attention in ("full", "channel")
        spatial = attention in ("full", "spatial")
        norm, _, gate = options(config)
        c_prev = config["in_channels"]
        stages = []
        for w in config["widths"]:
            stages.append(Stage(c_prev, w, norm, channel, spatial, gate == "residual"))
            c_prev = w
        self.stages = nn.ModuleList(stages)
        self.head = Head(c_prev, config["hidden"], len(config["classes"]), config["dropout"])

    def forward(self, x, dropout=True):
        for s in self.stages:
            x = s(x)
        return self.head(x, dropout)

    def init_params(self, generator=None):
        """The spec's initialisations (`init` of the config), for a model not loaded from a
        checkpoint: pytorch = uniform(+-1/sqrt(fan_in)) weights and biases; he = normal weights
        with std sqrt(2 / fan_in), biases 0; glorot = uniform(+-sqrt(6 / (fan_in + fan_out)))
        weights, biases 0. Batch norm: weight 1, bias 0, running mean 0, running var 1."""
        _, init, _ = options(self.config)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    w = m.weight
                    fan_in = w[0].numel()
                    fan_out = w.shape[0] * (w[0][0].numel() if w.dim() > 2 else 1)
                    if init == "pytorch":
                        b = 1.0 / math.sqrt(fan_in)
                        w.uniform_(-b, b, generator=generator)
                        m.bias.uniform_(-b, b, generator=generator)
                    elif init == "he":
                        w.normal_(0.0, math.sqrt(2.0 / fan_in), generator=generator)
                        m.bias.zero_()
                    else:
                        b = math.sqrt(6.0 / (fan_in + fan_out))
                        w.uniform_(-b, b, generator=generator)
                        m.bias.zero_()
                elif isinstance(m, nn.BatchNorm2d):
                    m.reset_parameters()


def read_config(path):
    """The model config JSON of a fer-cbam safetensors file's header."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    meta = header.get("__metadata__") or {}
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path}: no {CONFIG_KEY!r} in the header: not a fer-cbam checkpoint")
    return json.loads(meta[CONFIG_KEY])


def load_checkpoint(path):
    """(model, config) from a fer-cbam checkpoint, f32, eval mode; every tensor is loaded by
    its own name (strict: a missing or unexpected name is an error)."""
    from safetensors.torch import load_file

    config = read_config(path)
    model = FerCbam(config)
    state = load_file(path)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: missing tensors {missing}, unexpected tensors {unexpected}")
    model.eval()
    return model, config


def load(path):
    """The model of a fer-cbam checkpoint (f32, eval mode); its config is `model.config`."""
    return load_checkpoint(path)[0]
