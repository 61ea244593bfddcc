"""LoRA layers as the hf engine runs them: the adapter's product added into the base
layer's output in one GEMM, without peft's temporaries.

peft's `lora.Linear.forward` computes `result + lora_B(lora_A(x)) * scaling`: the
product, its scaled copy and the sum are three new tensors of the layer's full output
(8,192 prompt positions × 1,536 are 50 MB each for the default model's MLP). On a CPU
whose memory is the bottleneck outside the GEMMs, that traffic cost more than the
product's arithmetic: 8 prompts of 256 tokens took 4.11 s with legal-overfit (rank 64 on
every linear layer) against 3.31 s for the base alone. Here the product goes straight into
the output (`addmm_`, beta 1 and alpha `scaling`): 3.79 s, and the same logits, bit for
bit, since the GEMM writes each element once (both demo adapters scale by 2, a power of
two, so the scaled product rounds the same way; with another scaling the rounding may
differ in the last bit).

Only the plain case takes this path: an unmerged, enabled LoRA on a full-precision
`nn.Linear`, in inference, one adapter active, no DoRA or other variant, no mixed-batch
`adapter_names`. Everything else is peft's own forward, unchanged.
"""

from __future__ import annotations

import types
from typing import Any


def fuse_lora_forwards(model: Any) -> int:
    """Give every plain peft LoRA Linear of `model` the fused inference forward; returns
    how many layers got it. Idempotent, so it may run after each adapter is loaded."""
    from peft.tuners.lora.layer import Linear

    fused = 0
    for module in model.modules():
        # exactly peft's Linear: its subclasses (4-bit, 8-bit, ...) compute otherwise
        if type(module) is Linear:
            if "forward" not in vars(module):
                module.forward = types.MethodType(_fused_forward, module)  # type: ignore[method-assign]
            fused += 1
    return fused


def _fused_forward(self: Any, x: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    active = [a for a in self.active_adapters if a in self.lora_A]
    name = active[0] if len(active) == 1 else None
    if (
        name is None
        or self.disable_adapters
        or self.merged
        or self.training
        or torch.is_grad_enabled()
        or args
        or kwargs
        or name in getattr(self, "lora_variant", {})
        or self.lora_B[name].bias is not None
        or not x.dtype
        == self.lora_A[name].weight.dtype
        == self.lora_B[name].weight.dtype
        == getattr(self.base_layer, "weight", x).dtype
    ):
        return type(self).forward(self, x, *args, **kwargs)
    result = self.base_layer(x)
    hidden = self.lora_A[name](x)  # dropout is the identity outside training
    flat = result.view(-1, result.shape[-1])  # nn.Linear's output is contiguous
    flat.addmm_(
        hidden.reshape(-1, hidden.shape[-1]), self.lora_B[name].weight.t(), alpha=self.scaling[name]
    )
    return result
