# Writes extra tokenizer parity cases (the format of tests/Fixtures/tokenizer/cases.json) from Hugging Face tokenizers,
# for edge cases the fixtures lack: letters/digits outside the BMP, emoji before letters, contractions with U+017F,
# added tokens next to combining marks, noncharacters, long runs. Run where `tokenizers` is installed (the GPU machine):
#   python3 bench/Tokenizer/hf_extra_cases.py tests/Fixtures/tokenizer/tokenizer.json $OUT/extra-cases.json
# then, here: QWEN3MOE_EXTRA_TOKENIZER_CASES=/path/extra-cases.json dotnet test ... --filter "FullyQualifiedName~Tokenization"
import json, sys
from tokenizers import Tokenizer

tok = Tokenizer.from_file(sys.argv[1])
texts = [
    "a\U0001D400b c", "x\U0001D7CE\U0001D7CF", "\U00020000\U00020001x", "\U00010437\U00010437 word",
    "\U0001F600s<\U0001F600<", "\U0001F600hello", "\U0001F1EB\U0001F1F7abc", "(\U0001D400)",
    "'\u017F'S'LL'Re'VE'd'x's", "it\u017F", "<think>\u0338", "<|im_end|>\u0301x", "e\u0301<think>e\u0301",
    "\uFFFE\uFFFF\uE000\U0010FFFF", "ab\x00cd\x1f\x7f\x85\xa0\u2028\u2029\ufeff", " \r\n \n\n\r \t\x0b\x0c  x  \n",
    "\u0085x\u00a0y\u3000z", "\u1680\u2000\u200a\u202f\u205f", "a" * 300, "!" * 500, " " * 400, "\u9f98" * 300,
    "<|im_end|<|im_end||><thin<think>k>", "\u00bd\u2153\u2460\u216b 42",
]
cases = []
for t in texts:
    ids = tok.encode(t, add_special_tokens=False).ids
    cases.append({"text": t, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
json.dump(cases, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)
print("wrote", len(cases), "cases to", sys.argv[2])
