"""Low-rank adaptation: LoRA factor pairs of PEFT and pure-torch models, and the methods acting on them.

``import optimlab.lora`` needs only torch; peft and transformers are imported inside the functions that use them.
"""

from optimlab.lora.balancedness import (
    BalancednessReport,
    balancedness,
    balancedness_matrix,
    balancedness_report,
    grad_imbalance,
)
from optimlab.lora.bar import (
    BAR,
    BalancednessLogger,
    BARCallback,
    alpha_schedule,
    bar_factors,
    bar_rescale_,
    create_bar_optimizer,
)
from optimlab.lora.layers import LoRALinear, inject_lora
from optimlab.lora.nora import nora_init_
from optimlab.lora.noraplus import NoRAPlus, create_noraplus_optimizer
from optimlab.lora.pairs import LoRAPair, describe_model, find_lora_pairs, is_lora_layer, resolve_pairs
from optimlab.lora.reflora import RefLoRA, balanced_metric, create_reflora_optimizer, gram_gap, refactor_

__all__ = [
    "BAR",
    "BARCallback",
    "BalancednessLogger",
    "BalancednessReport",
    "LoRALinear",
    "LoRAPair",
    "NoRAPlus",
    "RefLoRA",
    "alpha_schedule",
    "balanced_metric",
    "balancedness",
    "balancedness_matrix",
    "balancedness_report",
    "bar_factors",
    "bar_rescale_",
    "create_bar_optimizer",
    "create_noraplus_optimizer",
    "create_reflora_optimizer",
    "describe_model",
    "find_lora_pairs",
    "grad_imbalance",
    "gram_gap",
    "inject_lora",
    "is_lora_layer",
    "nora_init_",
    "refactor_",
    "resolve_pairs",
]
