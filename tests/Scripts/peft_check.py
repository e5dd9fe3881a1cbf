# Proof (b) of issue 12: an adapter trained and saved by our library, loaded by PEFT 0.21 onto transformers 5.17's
# Qwen3MoeForCausalLM, gives our logits (float32, CPU). Also loads our merged HF export with plain transformers.
# Usage: python3 peft_check.py BASE_MODEL_DIR OURS_DIR   (OURS_DIR: what PeftExportTests writes with QWEN3MOE_PEFT_CHECK_OUT)
import json, sys, torch, transformers, peft
from safetensors.torch import load_file
from transformers import Qwen3MoeForCausalLM
from peft import PeftModel
base_dir, ours_dir = sys.argv[1], sys.argv[2]
ours = load_file(f"{ours_dir}/ours.safetensors")
ids, expected = ours["input_ids"], ours["logits"]
base = Qwen3MoeForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager")
model = PeftModel.from_pretrained(base, ours_dir).eval()
with torch.no_grad():
    peft_logits = model(input_ids=ids).logits
    with model.disable_adapter():
        base_logits = model(input_ids=ids).logits
merged = Qwen3MoeForCausalLM.from_pretrained(f"{ours_dir}/merged", dtype=torch.float32, attn_implementation="eager").eval()
with torch.no_grad():
    merged_logits = merged(input_ids=ids).logits
res = {"peft": peft.__version__, "transformers": transformers.__version__,
       "peft_vs_ours_max_abs": (peft_logits - expected).abs().max().item(),
       "hf_merged_export_vs_ours_max_abs": (merged_logits - expected).abs().max().item(),
       "adapter_effect_max_abs": (base_logits - expected).abs().max().item()}
res["pass"] = res["peft_vs_ours_max_abs"] < 1e-4 and res["hf_merged_export_vs_ours_max_abs"] < 1e-4 and res["adapter_effect_max_abs"] > 0.05
print("PEFT_CHECK", json.dumps(res), flush=True)
