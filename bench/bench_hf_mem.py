# Runs bench_hf.py (beside this file) unchanged, and also prints, wherever it reads torch.cuda.max_memory_allocated(),
# the caching allocator's max_memory_reserved() and the device's used memory (cudaMemGetInfo, = NVML used, incl. the
# CUDA context), so HF's peak compares like with like against our NVML-based number.
import json, os, runpy, sys, torch
_orig = torch.cuda.max_memory_allocated
def _patched(*a, **k):
    v = _orig(*a, **k)
    free, total = torch.cuda.mem_get_info()
    print("HF_MEM", json.dumps({"max_allocated_GiB": round(v / 2**30, 3), "max_reserved_GiB": round(torch.cuda.max_memory_reserved() / 2**30, 3),
                                "device_used_now_GiB": round((total - free) / 2**30, 3)}), flush=True)
    return v
torch.cuda.max_memory_allocated = _patched
here = os.path.dirname(os.path.abspath(__file__))
sys.argv = [os.path.join(here, "bench_hf.py")] + sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
