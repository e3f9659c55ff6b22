"""Loads the folders tests/interop/export_lm.mjs wrote with transformers and PEFT, as a person would, and
compares their next-token probabilities with the page's (tolerance 1e-4, the issue's).

    ~/.cache/peers/bin/python tests/interop/check_lm.py OUT_DIR
"""
import json
import os
import sys

import torch
from peft import PeftModel
from transformers import LlamaForCausalLM

torch.set_num_threads(1)
out = sys.argv[1]
page = json.load(open(os.path.join(out, "logits.json")))
vocab = page["vocab"]


def ids_of(text):
    return torch.tensor([[256] + list(text.encode("utf-8"))])


def worst(model, rows):
    w = 0.0
    with torch.no_grad():
        for text, flat in rows.items():
            ours = torch.tensor(flat).view(-1, vocab).softmax(-1)
            theirs = model(ids_of(text)).logits[0].float().softmax(-1)
            w = max(w, (ours - theirs).abs().max().item())
    return w


def load_base():
    m, info = LlamaForCausalLM.from_pretrained(os.path.join(out, "base"), output_loading_info=True)
    missing = [*info["missing_keys"], *info["unexpected_keys"], *info["mismatched_keys"]]
    assert not missing, f"the base folder loads with problems: {info}"
    return m.eval()


ok = True
w = worst(load_base(), page["base"])
print(f"base: largest probability difference {w:.2e}")
ok &= w <= 1e-4
for name, rows in page["adapters"].items():
    model = PeftModel.from_pretrained(load_base(), os.path.join(out, name)).eval()
    w = worst(model, rows)
    print(f"{name}: largest probability difference {w:.2e}")
    ok &= w <= 1e-4
print("all within 1e-4" if ok else "SOME DIFFER BY MORE THAN 1e-4")
sys.exit(0 if ok else 1)
