#!/usr/bin/env python3
"""LoRA fine-tuning in PyTorch + Hugging Face PEFT (f32, CPU, 2 threads) with the step `malus
train --lora` takes: one sequence of SEQ tokens per update from random windows of a uint16
token file, rank 8, alpha 16, no dropout, every linear layer adapted, AdamW on the adapters,
gradient clipping at 1. Prints tokens/s over the updates after the first. Used by
bench/lora_vs_peft.sh.

usage: peft_train.py MODEL_DIR TOKENS.bin SEQ STEPS [compile]
"""
import sys
import time

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

model_dir, tokens, SEQ, STEPS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
torch.set_num_threads(2)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets))
model.train()
trained = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trained, lr=2e-4, weight_decay=0.0)
forward = torch.compile(model) if sys.argv[5:] == ["compile"] else model
data = np.fromfile(tokens, dtype=np.uint16).astype(np.int64)
rng = np.random.default_rng(0)
times = []
for step in range(STEPS):
    t0 = time.perf_counter()
    i = int(rng.integers(0, len(data) - SEQ - 1))
    x = torch.from_numpy(data[i : i + SEQ + 1])[None]
    logits = forward(input_ids=x[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), x[0, 1:])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trained, 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t0)
print(f"peft tokens_per_s {SEQ / np.mean(times[1:]):.1f} loss {loss.item():.3f}")
