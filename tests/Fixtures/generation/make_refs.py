# Greedy generation references from Hugging Face transformers' Qwen3MoeForCausalLM.generate(do_sample=False),
# float32 on CPU, eager attention, for the golden fixture models (tests/Fixtures/golden/{tiny,mixed}/model).
# Usage (from the repository root):  python3 tests/Fixtures/generation/make_refs.py OUT_DIR
# Writes OUT_DIR/{name}.json (prompts, new token ids per row, settings) and OUT_DIR/{name}.safetensors
# ("{case}.logits" [steps, B, V]: the raw logits HF produced at each generation step, before any processor).
import json, os, sys
import torch
import transformers
from safetensors.torch import save_file
from transformers import Qwen3MoeForCausalLM

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(8)
print("transformers", transformers.__version__, "torch", torch.__version__, flush=True)

CASES = [
    # name, prompt lengths, new tokens, extra generate kwargs
    ("single", [7], 12, {}),
    ("ragged", [5, 13, 9], 12, {}),           # left padded with pad id 0, attention mask
    ("repetition_penalty", [6], 12, {"repetition_penalty": 1.5}),
]

for name in ("tiny", "mixed"):
    folder = os.path.join("tests", "Fixtures", "golden", name, "model")
    model = Qwen3MoeForCausalLM.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(4242 + len(name))
    result = {"transformers": transformers.__version__, "torch": torch.__version__, "pad_token_id": 0, "cases": []}
    tensors = {}
    for case, lengths, new, extra in CASES:
        prompts = [torch.randint(1, vocab, (n,), generator=g).tolist() for n in lengths]
        width = max(lengths)
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False, max_new_tokens=new,
                                 pad_token_id=0, eos_token_id=None, return_dict_in_generate=True, output_logits=True, **extra)
        seqs = out.sequences[:, width:]
        result["cases"].append({"name": case, "prompts": prompts, "max_new_tokens": new, "options": extra,
                                "new_tokens": seqs.tolist()})
        tensors[f"{case}.logits"] = torch.stack([l.float() for l in out.logits]).contiguous()   # [steps, B, V]
        print(name, case, seqs.tolist(), flush=True)
    json.dump(result, open(os.path.join(OUT, f"{name}.json"), "w"), indent=1)
    save_file(tensors, os.path.join(OUT, f"{name}.safetensors"))
