"""Low-rank adaptation: LoRA factor pairs of PEFT and pure-torch models, and the methods acting on them.

``import optimlab.lora`` needs only torch; peft and transformers are imported inside the functions that use them.
"""

from optimlab.lora.layers import LoRALinear, inject_lora
from optimlab.lora.pairs import LoRAPair, describe_model, find_lora_pairs, is_lora_layer, resolve_pairs

__all__ = ["LoRALinear", "LoRAPair", "describe_model", "find_lora_pairs", "inject_lora", "is_lora_layer",
           "resolve_pairs"]
