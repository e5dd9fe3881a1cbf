# Reference for the `generate` workload (bench/Workloads/GenerateBenchmark.cs), from ../shared/gpu/hf_generate.py:
# Anchor: HF transformers generate() on Qwen3-30B-A3B shapes (48 layers, random bf16 weights), greedy, prompt 512,
# 256 new tokens, batch 1 and 32; grouped_mm experts, sdpa; default (dynamic) cache, then static cache.
import time, json, sys, torch, transformers
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
torch.manual_seed(0)
L = int(sys.argv[1]) if len(sys.argv) > 1 else 48
CACHES = sys.argv[2].split(",") if len(sys.argv) > 2 else ("dynamic", "static")   # e.g. `generate_hf.py 48 dynamic`
cfg = Qwen3MoeConfig(vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=L, num_attention_heads=32,
            num_key_value_heads=4, head_dim=128, moe_intermediate_size=768, num_experts=128, num_experts_per_tok=8,
            norm_topk_prob=True, rope_theta=1e6, max_position_embeddings=40960, rms_norm_eps=1e-6, tie_word_embeddings=False)
cfg._attn_implementation = "sdpa"; cfg._experts_implementation = "grouped_mm"
torch.set_default_dtype(torch.bfloat16)
with torch.device("cuda"):
    model = Qwen3MoeForCausalLM(cfg).eval()
P, N = 512, 256
for cache in CACHES:
    for B in (1, 32):
        ids = torch.randint(0, 151936, (B, P), device="cuda")
        kw = dict(max_new_tokens=N, min_new_tokens=N, do_sample=False, pad_token_id=0, eos_token_id=None)
        if cache == "static": kw["cache_implementation"] = "static"
        try:
            with torch.no_grad():
                model.generate(ids, **dict(kw, max_new_tokens=8, min_new_tokens=8))
                torch.cuda.synchronize(); t = time.perf_counter()
                model(input_ids=ids); torch.cuda.synchronize(); prefill = time.perf_counter() - t
                t = time.perf_counter(); out = model.generate(ids, **kw); torch.cuda.synchronize(); total = time.perf_counter() - t
            new = out.shape[1] - P
            print("RESULT", json.dumps({"cache": cache, "batch": B, "prompt": P, "new": new, "prefill_s": prefill, "total_s": total,
                  "decode_tokens_per_s": B * new / max(total - prefill, 1e-9), "per_sequence_tokens_per_s": new / max(total - prefill, 1e-9)}), flush=True)
        except Exception as e:
            print("FAIL", cache, B, repr(e)[:300], flush=True)
