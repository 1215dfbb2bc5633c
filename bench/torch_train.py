#!/usr/bin/env python3
"""Trains a Llama-family model of the given shape in PyTorch (f32, CPU) on random windows of a
uint16 token file, with the same step as `malus train` (one sequence per micro-step, gradient
accumulation, AdamW, clipping), and prints tokens/s. Used by bench/torch_vs_malus.sh.

usage: torch_train.py TOKENS.bin DIM LAYERS HEADS HIDDEN VOCAB SEQ ACCUM STEPS
"""
import sys
import time

import numpy as np
import torch

path = sys.argv[1]
DIM, LAYERS, HEADS, HIDDEN, VOCAB, SEQ, ACCUM, STEPS = map(int, sys.argv[2:10])
HD, THETA, EPS = DIM // HEADS, 10000.0, 1e-5
torch.manual_seed(0)
torch.set_num_threads(2)
data = torch.from_numpy(np.fromfile(path, dtype=np.uint16).astype(np.int64))


def lin(o, i):
    return torch.nn.Parameter((torch.rand(o, i) * 2 - 1) * i ** -0.5)


params = {"emb": torch.nn.Parameter((torch.rand(VOCAB, DIM) * 2 - 1) * 0.02), "norm": torch.nn.Parameter(torch.ones(DIM))}
for l in range(LAYERS):
    params.update({f"{l}.n1": torch.nn.Parameter(torch.ones(DIM)), f"{l}.n2": torch.nn.Parameter(torch.ones(DIM)),
                   f"{l}.q": lin(DIM, DIM), f"{l}.k": lin(DIM, DIM), f"{l}.v": lin(DIM, DIM), f"{l}.o": lin(DIM, DIM),
                   f"{l}.w1": lin(HIDDEN, DIM), f"{l}.w2": lin(DIM, HIDDEN), f"{l}.w3": lin(HIDDEN, DIM)})
i = torch.arange(HD // 2, dtype=torch.float32)
ang = torch.arange(SEQ, dtype=torch.float32)[:, None] / THETA ** (2 * i / HD)
COS, SIN = torch.cos(ang)[:, None, :], torch.sin(ang)[:, None, :]
MASK = torch.full((SEQ, SEQ), float("-inf")).triu(1)


def rms(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def rope(x):
    x = x.view(SEQ, HEADS, HD // 2, 2)
    x0, x1 = x[..., 0], x[..., 1]
    return torch.stack([x0 * COS - x1 * SIN, x0 * SIN + x1 * COS], -1).view(SEQ, HEADS, HD)


def loss_of(tokens):
    x = params["emb"][tokens[:SEQ]]
    for l in range(LAYERS):
        n = rms(x, params[f"{l}.n1"])
        q, k = rope(n @ params[f"{l}.q"].T), rope(n @ params[f"{l}.k"].T)
        v = (n @ params[f"{l}.v"].T).view(SEQ, HEADS, HD)
        a = (torch.einsum("ihd,jhd->hij", q, k) / HD ** 0.5 + MASK).softmax(-1)
        x = x + torch.einsum("hij,jhd->ihd", a, v).reshape(SEQ, DIM) @ params[f"{l}.o"].T
        n = rms(x, params[f"{l}.n2"])
        x = x + (torch.nn.functional.silu(n @ params[f"{l}.w1"].T) * (n @ params[f"{l}.w3"].T)) @ params[f"{l}.w2"].T
    return torch.nn.functional.cross_entropy(rms(x, params["norm"]) @ params["emb"].T, tokens[1:])


opt = torch.optim.AdamW(params.values(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
gen = torch.Generator().manual_seed(1)
times = []
for step in range(STEPS):
    t0 = time.perf_counter()
    for _ in range(ACCUM):
        pos = int(torch.randint(0, len(data) - SEQ - 1, (1,), generator=gen))
        (loss_of(data[pos:pos + SEQ + 1]) / ACCUM).backward()
    torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    times.append(time.perf_counter() - t0)
steady = times[1:] if len(times) > 1 else times
print(f"pytorch {torch.__version__} tokens_per_s {ACCUM * SEQ * len(steady) / sum(steady):.1f} last_loss {loss_of(data[:SEQ + 1]).item():.3f}")
