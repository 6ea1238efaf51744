"""Low-rank adapters: ``LoRALinear`` wraps a frozen ``nn.Linear`` and adds (alpha / r) * B A x."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from mdllm.errors import MdllmError

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise MdllmError(f"LoRA rank must be positive, got {rank}")
        self.base = base
        self.base.weight.requires_grad_(False)
        if self.base.bias is not None:
            self.base.bias.requires_grad_(False)
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # B = 0: the adapter starts as a no-op
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def weight(self):
        return self.base.weight

    def forward(self, x):
        return self.base(x) + (self.dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scaling

    def merge(self) -> nn.Linear:
        """A plain Linear whose weight includes the adapter."""
        merged = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            delta = (self.lora_B.float() @ self.lora_A.float()) * self.scaling
            merged.weight.copy_((self.base.weight.float() + delta).to(self.base.weight.dtype))
            if self.base.bias is not None:
                merged.bias.copy_(self.base.bias)
        return merged


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float = 0.0, targets=DEFAULT_TARGETS) -> list[str]:
    """Freeze the model and wrap every Linear whose attribute name is in ``targets``; returns the
    wrapped module names."""
    targets = tuple(targets)
    unknown = set(targets) - set(DEFAULT_TARGETS)
    if unknown:
        raise MdllmError(f"unknown LoRA target modules {sorted(unknown)}; choose from {DEFAULT_TARGETS}")
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in targets and isinstance(child, nn.Linear):
                setattr(module, child_name, LoRALinear(child, rank, alpha, dropout))
                wrapped.append(f"{name}.{child_name}" if name else child_name)
    if not wrapped:
        raise MdllmError(f"no module matched LoRA targets {targets}")
    return wrapped


def merge_lora(model: nn.Module) -> int:
    """Replace every LoRALinear by its merged Linear, in place; returns how many were merged."""
    n = 0
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merge())
                n += 1
    return n
