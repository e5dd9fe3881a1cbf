# Reference learning-rate multipliers from Hugging Face transformers' schedules, for LearningRateScheduleTests.
#   python3 gen_schedules.py OUT/hf_schedules.json
# Each case holds the schedule's lr_lambda(s) for s = 0 .. num_training_steps (the multiplier LambdaLR applies
# to the peak learning rate at scheduler step s).
import json, sys
import torch, transformers
from transformers import (get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup,
                          get_cosine_with_min_lr_schedule_with_warmup)

CASES = [  # (function, warmup, total, min_lr_rate or None)
    ("cosine", 0, 10, None), ("cosine", 3, 20, None), ("cosine", 5, 37, None), ("cosine", 10, 200, None),
    ("linear", 0, 10, None), ("linear", 3, 20, None), ("linear", 5, 37, None), ("linear", 10, 200, None),
    ("cosine_with_min_lr", 0, 10, 0.1), ("cosine_with_min_lr", 3, 20, 0.1), ("cosine_with_min_lr", 5, 37, 0.25),
    ("cosine_with_min_lr", 10, 200, 0.1),
]

out = []
for fn, w, t, r in CASES:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    if fn == "cosine": s = get_cosine_schedule_with_warmup(opt, w, t)
    elif fn == "linear": s = get_linear_schedule_with_warmup(opt, w, t)
    else: s = get_cosine_with_min_lr_schedule_with_warmup(opt, w, t, min_lr_rate=r)
    lam = s.lr_lambdas[0]
    out.append({"function": f"get_{fn}_schedule_with_warmup" if fn != "cosine_with_min_lr" else "get_cosine_with_min_lr_schedule_with_warmup",
                "num_warmup_steps": w, "num_training_steps": t, "min_lr_rate": r if r is not None else 0.0,
                "lr_lambda": [float(lam(i)) for i in range(t + 1)]})
json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": out}, open(sys.argv[1], "w"), indent=1)
print("schedules", len(out))
