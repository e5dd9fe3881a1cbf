# Generates the PEFT interchange fixtures (tests/Fixtures/peft) with Hugging Face PEFT 0.21 + transformers 5.17 on CPU,
# float32, eager attention, from the golden tiny/mixed models. Usage: python3 peft_fixtures.py GOLDEN_DIR OUT_DIR
# tests/Fixtures/peft keeps the two mixed_* fixtures (the tiny one duplicates their coverage). For each fixture: adapter/ (as PEFT's save_pretrained writes it, A and B random non-zero), expected.safetensors
# (logits on the golden input_ids; loss before each of 8 AdamW steps; the adapter after them, PEFT names) and info.json.
# Note: with transformers 5, PEFT rewrites target_modules gate_proj/up_proj/down_proj into the fused experts' target_parameters
# (with rank_pattern/alpha_pattern doubling gate_up_proj's rank), so the dense MLP is reached by a regex target_modules.
import json, os, sys, traceback, torch, transformers, peft
from safetensors.torch import save_file, load_file
from transformers import Qwen3MoeForCausalLM
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict

GOLDEN, OUT = sys.argv[1], sys.argv[2]
torch.set_num_threads(8)
EXPERTS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]
FIXTURES = {
    "tiny_attn_experts": ("tiny", dict(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], target_parameters=EXPERTS)),
    "mixed_all_rslora": ("mixed", dict(r=2, lora_alpha=6, use_rslora=True, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                                       target_parameters=EXPERTS, modules_to_save=["gate"])),
    "mixed_dense_regex": ("mixed", dict(r=3, lora_alpha=5, target_modules=r".*\.(q_proj|v_proj)$|.*layers\.1\.mlp\.(gate_proj|up_proj|down_proj)$")),
}

def run(name, golden, lc):
    out = os.path.join(OUT, name); os.makedirs(out, exist_ok=True)
    ids = load_file(os.path.join(GOLDEN, golden, "expected.safetensors"))["input_ids"]
    base = Qwen3MoeForCausalLM.from_pretrained(os.path.join(GOLDEN, golden, "model"), dtype=torch.float32, attn_implementation="eager")
    base.config._experts_implementation = "eager"
    info = {"peft": peft.__version__, "transformers": transformers.__version__, "torch": torch.__version__, "lora_config": {k: v for k, v in lc.items()}}
    experts = base.model.layers[0].mlp.experts
    info["experts_class"] = type(experts).__name__
    info["experts_is_transposed"] = getattr(experts, "is_transposed", None)
    info["experts_params"] = {n: list(p.shape) for n, p in experts.named_parameters()}
    info["router_class"] = type(base.model.layers[0].mlp.gate).__name__
    model = get_peft_model(base, LoraConfig(**lc))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_A" in n or "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
            elif "modules_to_save" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    info["trainable"] = [[n, list(p.shape), str(p.dtype)] for n, p in model.named_parameters() if p.requires_grad]
    info["modules"] = [f"{n}: {type(m).__name__}" for n, m in model.named_modules() if "layers.0." in n or "layers.1.mlp" in n]
    import tempfile, shutil
    tmp = tempfile.mkdtemp()
    model.save_pretrained(tmp)
    for f in ["adapter_config.json", "adapter_model.safetensors"]: shutil.copy(os.path.join(tmp, f), os.path.join(out, f))
    sd = load_file(os.path.join(out, "adapter_model.safetensors"))
    info["saved_keys"] = {k: list(v.shape) for k, v in sd.items()}
    info["adapter_config"] = json.load(open(os.path.join(out, "adapter_config.json")))
    exp = {}
    model.eval()
    with torch.no_grad():
        exp["logits"] = model(input_ids=ids).logits.float().contiguous()
        with model.disable_adapter():
            exp["base_logits"] = model(input_ids=ids).logits.float().contiguous()
    # merged model gives the same logits
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    traj = []
    for step in range(8):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        traj.append(loss.item())
    exp["adamw_loss_trajectory"] = torch.tensor(traj)
    for k, v in get_peft_model_state_dict(model).items():
        exp["trained." + k] = v.detach().float().contiguous()
    save_file(exp, os.path.join(out, "expected.safetensors"))
    info["trajectory"] = traj
    json.dump(info, open(os.path.join(out, "info.json"), "w"), indent=1)
    print(name, "OK", json.dumps({k: info[k] for k in ["experts_class", "experts_is_transposed", "experts_params", "router_class", "trajectory"]}))
    print(json.dumps(info["saved_keys"])[:3000])

for name, (golden, lc) in FIXTURES.items():
    try:
        run(name, golden, lc)
    except Exception:
        print(name, "FAILED"); traceback.print_exc()
