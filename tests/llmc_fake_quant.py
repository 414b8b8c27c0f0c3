"""Run in llm-compressor's environment (test_producers): apply a recipe to a model folder,
record what llm-compressor's own fake-quant model computes, then save it compressed.

Written before saving: the weights its fake-quant forward uses (compressed-tensors'
`fake_quantize` with each module's calibrated scale and zero point), keyed by module name, and
the in-memory model's logits on the first two calibration sequences (weights and, for W8A8 or
FP8, input activations fake-quantized), in FAKE_QUANT.logits.safetensors.

    python tests/llmc_fake_quant.py MODEL CALIBRATION RECIPE GROUP_SIZE OUT FAKE_QUANT.safetensors
"""

import sys

import pyarrow.parquet as pq
import torch
from compressed_tensors.quantization.lifecycle.forward import fake_quantize
from safetensors.torch import save_file

from featureaudit.compress.llm_compress import apply_recipe, load, save

model_dir, calibration, recipe, group_size, out, fake_path = sys.argv[1:]
model, tokenizer = load(model_dir)
apply_recipe(model, calibration, recipe, int(group_size))
fake = {}
with torch.no_grad():
    for name, module in model.named_modules():
        scheme = getattr(module, "quantization_scheme", None)
        if scheme is None or scheme.weights is None or not hasattr(module, "weight_scale"):
            continue
        zero = getattr(module, "weight_zero_point", None)
        fake[name] = fake_quantize(module.weight, module.weight_scale, zero, scheme.weights).float().contiguous()
    ids = torch.tensor(pq.read_table(calibration).column("input_ids").to_pylist()[:2])
    logits = model(ids).logits.float().contiguous()
save_file(fake, fake_path)
save_file({"input_ids": ids, "logits": logits}, fake_path.replace(".safetensors", ".logits.safetensors"))
save(model, tokenizer, out)
