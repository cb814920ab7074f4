"""Low-rank adaptation: LoRA factor pairs of PEFT and pure-torch models, and the methods acting on them.

``import optimlab.lora`` needs only torch; peft and transformers are imported inside the functions that use them.
"""

from optimlab.lora.layers import LoRALinear, inject_lora
from optimlab.lora.nora import nora_init_
from optimlab.lora.noraplus import NoRAPlus, create_noraplus_optimizer
from optimlab.lora.pairs import LoRAPair, describe_model, find_lora_pairs, is_lora_layer, resolve_pairs
from optimlab.lora.reflora import RefLoRA, balanced_metric, create_reflora_optimizer, gram_gap, refactor_

__all__ = ["LoRALinear", "LoRAPair", "NoRAPlus", "RefLoRA", "balanced_metric", "create_noraplus_optimizer",
           "create_reflora_optimizer", "describe_model", "find_lora_pairs", "gram_gap", "inject_lora", "is_lora_layer",
           "nora_init_", "refactor_", "resolve_pairs"]
