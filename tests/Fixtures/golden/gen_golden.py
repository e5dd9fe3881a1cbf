# Generates the model fixtures of this folder (tiny/, mixed/, wide/) from Hugging Face transformers'
# Qwen3MoeForCausalLM, for the parity tests (tests/Parity). Run on the GPU machine (CPU torch, float32):
#   python3 gen_golden.py OUT   ->  OUT/<name>/{model/, expected.safetensors, expected.json}
# Derived from /work/shared/golden/gen_golden.py (which also made tests/Fixtures/tokenizer); same seeds, so tiny/ and
# mixed/ reproduce the earlier files bit for bit, plus the gradient of every parameter and the wide/ fixture.
import json, os, sys, copy, math
import torch
from safetensors.torch import save_file, load_file

OUT = sys.argv[1]
HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(8)

import transformers
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
print("transformers", transformers.__version__, "torch", torch.__version__)

CONFIGS = {
  # name: (visibility, kwargs, shard)
  "tiny": ("public", dict(vocab_size=384, hidden_size=64, intermediate_size=128, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, moe_intermediate_size=48,
        num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        rope_theta=1000000.0, max_position_embeddings=512, rms_norm_eps=1e-6, tie_word_embeddings=False,
        router_aux_loss_coef=0.001, initializer_range=0.08), None),
  "mixed": ("public", dict(vocab_size=512, hidden_size=96, intermediate_size=160, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=1, head_dim=16, moe_intermediate_size=40,
        num_experts=16, num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1, mlp_only_layers=[1],
        rope_theta=10000.0, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=True,
        router_aux_loss_coef=0.01, initializer_range=0.08), "150KB"),
  # larger activations (initializer_range 0.5): small numeric slips (RMSNorm eps, RoPE theta) move outputs further
  "wide": ("public", dict(vocab_size=256, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, moe_intermediate_size=32,
        num_experts=8, num_experts_per_tok=2, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
        rope_theta=10000.0, max_position_embeddings=256, rms_norm_eps=1e-6, tie_word_embeddings=False,
        router_aux_loss_coef=0.001, initializer_range=0.5), None),
}

def to_hub_layout(sd, cfg):
    """Make sure expert weights are stored per expert, as hub checkpoints of Qwen3-MoE are."""
    out = {}
    for k, v in sd.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            pre = k[: -len("gate_up_proj")]
            E = v.shape[0]; I = cfg.moe_intermediate_size; H = cfg.hidden_size
            if v.shape[1] == 2 * I:   # [E, 2I, H]
                g, u = v[:, :I, :], v[:, I:, :]
            else:                      # [E, H, 2I]
                g, u = v[:, :, :I].transpose(1, 2), v[:, :, I:].transpose(1, 2)
            for e in range(E):
                out[f"{pre}{e}.gate_proj.weight"] = g[e].contiguous()
                out[f"{pre}{e}.up_proj.weight"] = u[e].contiguous()
        elif k.endswith("mlp.experts.down_proj"):
            pre = k[: -len("down_proj")]
            E = v.shape[0]; I = cfg.moe_intermediate_size; H = cfg.hidden_size
            d = v if v.shape[1] == H else v.transpose(1, 2)   # want [E, H, I]
            for e in range(E):
                out[f"{pre}{e}.down_proj.weight"] = d[e].contiguous()
        else:
            out[k] = v.contiguous()
    return out

def save_hub_checkpoint(model, cfg, path, shard):
    os.makedirs(path, exist_ok=True)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    sd = to_hub_layout(sd, cfg)
    cfg.save_pretrained(path)
    keys = sorted(sd.keys())
    if shard is None:
        save_file(sd, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    else:
        limit = int(shard.replace("KB", "")) * 1024
        shards, cur, size = [], {}, 0
        for k in keys:
            nb = sd[k].numel() * sd[k].element_size()
            if cur and size + nb > limit:
                shards.append(cur); cur, size = {}, 0
            cur[k] = sd[k]; size += nb
        shards.append(cur)
        wmap = {}
        for i, s in enumerate(shards):
            fn = f"model-{i+1:05d}-of-{len(shards):05d}.safetensors"
            save_file(s, os.path.join(path, fn), metadata={"format": "pt"})
            for k in s: wmap[k] = fn
        total = sum(v.numel() * v.element_size() for v in sd.values())
        json.dump({"metadata": {"total_size": total}, "weight_map": wmap},
                  open(os.path.join(path, "model.safetensors.index.json"), "w"), indent=2)
    return keys

def run_config(name, vis, kw, shard):
    torch.manual_seed(1234 + len(name))
    cfg = Qwen3MoeConfig(**kw)
    cfg._attn_implementation = "eager"
    model = Qwen3MoeForCausalLM(cfg).float().eval()
    base = os.path.join(OUT, name)
    keys = save_hub_checkpoint(model, cfg, os.path.join(base, "model"), shard)
    # reload from the hub-layout checkpoint to prove the layout round-trips
    re = Qwen3MoeForCausalLM.from_pretrained(os.path.join(base, "model"), attn_implementation="eager", torch_dtype=torch.float32).eval()

    g = torch.Generator().manual_seed(99)
    B, T = 2, 24
    ids = torch.randint(0, cfg.vocab_size, (B, T), generator=g)
    exp = {"input_ids": ids}
    with torch.no_grad():
        o1 = model(input_ids=ids, output_hidden_states=True, output_router_logits=True)
        o2 = re(input_ids=ids)
    reload_diff = (o1.logits - o2.logits).abs().max().item()
    exp["logits"] = o1.logits.float().contiguous()
    for i, h in enumerate(o1.hidden_states):
        exp[f"hidden_states.{i}"] = h.float().contiguous()
    rl = o1.router_logits if o1.router_logits is not None else ()
    sparse_layers = [i for i in range(cfg.num_hidden_layers)
                     if (i not in cfg.mlp_only_layers) and cfg.num_experts > 0 and (i + 1) % cfg.decoder_sparse_step == 0]
    for j, r in enumerate(rl):
        exp[f"router_logits.{sparse_layers[j]}"] = r.float().contiguous()
        top = torch.topk(r.float(), cfg.num_experts_per_tok, dim=-1).indices
        cnt = torch.bincount(top.flatten(), minlength=cfg.num_experts)
        exp[f"tokens_per_expert.{sparse_layers[j]}"] = cnt.to(torch.int64)
    logp = torch.log_softmax(o1.logits.float(), dim=-1)
    exp["next_token_logprobs"] = logp[:, :-1, :].gather(-1, ids[:, 1:, None]).squeeze(-1).contiguous()

    # loss and gradients, with and without the load-balancing loss
    m = copy.deepcopy(model).train()
    out = m(input_ids=ids, labels=ids)
    out.loss.backward()
    exp["loss_lm"] = out.loss.detach().reshape(1)
    # every parameter's gradient, named as in the module; fused experts as gate_up_proj [E, 2I, H], down_proj [E, H, I]
    for pn, p in m.named_parameters():
        gr = p.grad.detach().float()
        if pn.endswith("mlp.experts.gate_up_proj") and gr.shape[1] != 2 * cfg.moe_intermediate_size:
            gr = gr.transpose(1, 2)
        if pn.endswith("mlp.experts.down_proj") and gr.shape[1] != cfg.hidden_size:
            gr = gr.transpose(1, 2)
        exp[f"grad.{pn}"] = gr.contiguous()
    gn = torch.sqrt(sum((p.grad.float() ** 2).sum() for p in m.parameters() if p.grad is not None))
    exp["grad_global_norm"] = gn.reshape(1)

    m2 = copy.deepcopy(model).train()
    out2 = m2(input_ids=ids, labels=ids, output_router_logits=True)
    exp["loss_with_aux"] = out2.loss.detach().reshape(1)
    exp["aux_loss"] = out2.aux_loss.detach().reshape(1) if out2.aux_loss is not None else torch.zeros(1)

    # short AdamW run on the fixed batch
    m3 = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(m3.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    traj = []
    for step in range(8):
        opt.zero_grad()
        l = m3(input_ids=ids, labels=ids).loss
        l.backward()
        torch.nn.utils.clip_grad_norm_(m3.parameters(), 1.0)
        opt.step()
        traj.append(l.item())
    exp["adamw_loss_trajectory"] = torch.tensor(traj)

    save_file({k: v.contiguous() for k, v in exp.items()}, os.path.join(base, "expected.safetensors"))
    meta = {"config": kw, "sparse_layers": sparse_layers, "batch": B, "seq_len": T,
            "reload_max_abs_diff": reload_diff, "checkpoint_keys": len(keys),
            "adamw": {"lr": 1e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1, "clip_grad_norm": 1.0, "steps": 8},
            "loss": "mean next-token cross-entropy over all positions (labels = input_ids shifted by one)",
            "loss_with_aux": "loss + router_aux_loss_coef * load-balancing loss over all sparse layers",
            "transformers": transformers.__version__, "torch": torch.__version__,
            "loss_lm": exp["loss_lm"].item(), "aux_loss": exp["aux_loss"].item(), "adamw_loss_trajectory": traj}
    json.dump(meta, open(os.path.join(base, "expected.json"), "w"), indent=2)
    print(name, "grads", sorted(k for k in exp if k.startswith("grad.") and "layers.0." in k))
    print(name, "keys", len(keys), "reload diff", reload_diff, "loss", exp["loss_lm"].item(), "traj", [round(t, 4) for t in traj])
    print("  sample keys", [k for k in keys if "layers.0." in k][:12])

for name, (vis, kw, shard) in CONFIGS.items():
    if len(sys.argv) > 2 and name not in sys.argv[2:]: continue
    run_config(name, vis, kw, shard)
print("done")

