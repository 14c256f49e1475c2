"""The speed options that change a model's weights: fused QKV, channels_last, fp8.

Each runs on a freshly loaded component before offload hooks are placed (the
hooks would otherwise hold the old weights, or move them to `meta`), except
fp8, which quantizes on the device.
"""

from __future__ import annotations

from typing import Any

import torch

#: fused layer -> the projections it replaces, in diffusers' attention modules
_FUSED = {
    "to_qkv": ("to_q", "to_k", "to_v"),
    "to_kv": ("to_k", "to_v"),  # cross-attention: the query stays its own layer
    "to_added_qkv": ("add_q_proj", "add_k_proj", "add_v_proj"),
}


def fuse_qkv(model: Any) -> None:
    """Fuse attention's projections and drop the unfused ones: diffusers keeps them
    (to unfuse later, which nebula-build never does), a second copy of every
    attention weight (about 4 GB on FLUX)."""
    model.fuse_qkv_projections()
    for module in model.modules():
        if not getattr(module, "fused_projections", False):
            continue
        for fused, parts in _FUSED.items():
            if isinstance(getattr(module, fused, None), torch.nn.Module):
                for name in parts:
                    if name in module._modules:
                        delattr(module, name)


def channels_last(model: Any) -> None:
    model.to(memory_format=torch.channels_last)


def quantize_fp8(model: Any) -> None:
    """torchao's float8 config would, by default, turn on coordinate-descent tuning and
    lower float32 matmul precision for the whole process: every later compile would
    tune each kernel (minutes more per graph; seen on an H200) and float32 pipelines
    would compute differently. It is asked not to."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(
        model,
        Float8DynamicActivationFloat8WeightConfig(granularity=PerRow(), set_inductor_config=False),
        filter_fn=_fp8_friendly,
    )


def _fp8_friendly(module: torch.nn.Module, name: str) -> bool:
    """float8 matmuls want both dimensions in multiples of 16: the few layers that
    are not (a patch embedding) stay in bf16."""
    return (
        isinstance(module, torch.nn.Linear)
        and module.in_features % 16 == 0
        and module.out_features % 16 == 0
    )
