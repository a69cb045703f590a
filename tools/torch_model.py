"""The network of ../shared/spec/network.md as a PyTorch module whose state_dict names are the
checkpoint's, so a fer-cbam checkpoint loads with no conversion:

    import torch_model
    model = torch_model.load("model.safetensors")   # FerCbam, eval mode, f32
    logits = model(images)                          # images: [N, C, S, S], pixel / 255

The config (widths, image size, input channels, attention variant, norm, gate, classes) comes
from the checkpoint's header (`__metadata__["fer_cbam.config"]`); keys missing there take the
spec's defaults (norm none, gate multiply), as the engine reads them. `init` changes nothing
here: a loaded checkpoint brings its own values.
"""

import json

import torch
import torch.nn.functional as F
from torch import nn

CONFIG_KEY = "fer_cbam.config"


class ChannelGate(nn.Module):
    """M_c = sigmoid(mlp(mean_hw F) + mlp(max_hw F)); mlp: C -> max(1, C // 16) -> C."""

    def __init__(self, c, residual):
        super().__init__()
        h = max(1, c // 16)
        self.fc1 = nn.Linear(c, h)
        self.fc2 = nn.Linear(h, c)
        self.residual = residual

    def forward(self, x):
        def mlp(v):
            return self.fc2(F.relu(self.fc1(v)))

        m = torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))[:, :, None, None]
        return x + m * x if self.residual else m * x


class SpatialGate(nn.Module):
    """M_s = sigmoid(conv7x7([max_c F, mean_c F])), max first; no batch norm."""

    def __init__(self, residual):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, padding=3)
        self.residual = residual

    def forward(self, x):
        s = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        m = torch.sigmoid(self.conv(s))
        return x + m * x if self.residual else m * x


class Cbam(nn.Module):
    def __init__(self, c, attention, residual):
        super().__init__()
        if attention in ("full", "channel"):
            self.channel = ChannelGate(c, residual)
        if attention in ("full", "spatial"):
            self.spatial = SpatialGate(residual)

    def forward(self, x):
        for gate in self.children():
            x = gate(x)
        return x


class Stage(nn.Module):
    """conv 3x3 -> [batch norm] -> ELU -> max pool 2x2 -> [channel gate] -> [spatial gate]."""

    def __init__(self, c_in, c_out, config):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        if config.get("norm", "none") == "batch":
            self.bn = nn.BatchNorm2d(c_out, eps=1e-5, momentum=0.1)
        if config["attention"] != "none":
            self.cbam = Cbam(c_out, config["attention"], config.get("gate") == "residual")

    def forward(self, x):
        x = self.conv(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        x = F.max_pool2d(F.elu(x), 2)
        return self.cbam(x) if hasattr(self, "cbam") else x


class Head(nn.Module):
    def __init__(self, c, hidden, classes, dropout):
        super().__init__()
        self.fc1 = nn.Linear(c, hidden)
        self.fc2 = nn.Linear(hidden, classes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        x = self.dropout(x.mean(dim=(2, 3)))
        return self.fc2(self.dropout(F.elu(self.fc1(x))))


class FerCbam(nn.Module):
    """The whole network for one config dict (the checkpoint's JSON); returns the logits."""

    def __init__(self, config):
        super().__init__()
        for key, allowed in (("attention", ("full", "none", "channel", "spatial")),
                             ("norm", ("none", "batch")), ("gate", ("multiply", "residual"))):
            if config.get(key, allowed[0]) not in allowed:
                raise ValueError(f"config: {key} must be one of {allowed}, got {config[key]!r}")
        self.config = dict(config)
        c = config["in_channels"]
        stages = []
        for w in config["widths"]:
            stages.append(Stage(c, w, config))
            c = w
        self.stages = nn.ModuleList(stages)
        self.head = Head(c, config["hidden"], len(config["classes"]), config["dropout"])

    def forward(self, x):
        for stage in self.stages:
            x = stage(x)
        return self.head(x)


def read_config(path):
    """The model config stored in a fer-cbam checkpoint's safetensors header."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n)).get("__metadata__") or {}
    if CONFIG_KEY not in meta:
        raise ValueError(f"{path}: no {CONFIG_KEY!r} in the header: not a fer-cbam checkpoint")
    return json.loads(meta[CONFIG_KEY])


def load(path):
    """The checkpoint at `path` as a FerCbam in eval mode (dropout off, batch norm on its
    running statistics), every tensor loaded by its own name: a missing or extra tensor is an
    error."""
    from safetensors.torch import load_file

    model = FerCbam(read_config(path))
    model.load_state_dict(load_file(path), strict=True)
    return model.eval()
