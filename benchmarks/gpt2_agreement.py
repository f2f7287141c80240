"""How closely GPT-2 imported into minigrad agrees with Hugging Face's GPT2LMHeadModel.

A GPT-2 of the real size (GPT-2 small: 12 layers, 768 wide, 12 heads, 1024 positions,
vocabulary 50257; 124M parameters) is created here with random weights, since nothing
can be downloaded, saved with ``save_pretrained``, read back with
``TransformerLM.from_pretrained``, and both run in float32 on the same tokens:

    max |Δ logit|       the largest difference of any logit, against their spread
    argmax agreement    how often both pick the same next token
    greedy              the same 32-token greedy continuation of a prompt?

    python benchmarks/gpt2_agreement.py                    # GPT-2 small, a (2, 128) batch
    python benchmarks/gpt2_agreement.py --smoke            # a tiny model (what the tests run)

Prints one JSON line. Needs torch and transformers (the interop extra and torch).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="a tiny model, for the tests")
    p.add_argument("--tokens", type=int, default=128, help="tokens per row (default 128)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        import torch
        import transformers
    except ImportError as e:
        print(f"gpt2_agreement: needs torch and transformers ({e.name} is missing)", file=sys.stderr)
        return 2
    import minigrad as mg
    from lmroad.models import TransformerLM

    size = (dict(vocab_size=97, n_positions=32, n_embd=32, n_layer=2, n_head=4) if args.smoke else
            dict(vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12))
    T = min(args.tokens, size["n_positions"] // 2)
    torch.manual_seed(args.seed)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**size)).eval()
    x = np.random.default_rng(args.seed).integers(0, size["vocab_size"], (2, T))
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        t0 = time.perf_counter()
        model = TransformerLM.from_pretrained(folder).eval()
        load_s = time.perf_counter() - t0
    with torch.no_grad():
        ref = hf(torch.tensor(x)).logits.numpy()
        want = hf.generate(torch.tensor(x[:1, :8]), max_new_tokens=32 if not args.smoke else 8,
                           do_sample=False, pad_token_id=0).numpy()
    with mg.no_grad():
        got = model(mg.tensor(x))[0].numpy()
    greedy = model.generate(mg.tensor(x[:1, :8]), want.shape[1] - 8, temperature=0.0).numpy()
    diff = np.abs(got - ref)
    row = {"bench": "gpt2-agreement", "preset": "smoke" if args.smoke else "gpt2-small",
           "parameters": int(sum(p.numel() for p in hf.parameters())), "tokens": int(x.size),
           "max_abs_logit_diff": float(diff.max()), "mean_abs_logit_diff": float(diff.mean()),
           "logit_std": float(ref.std()),
           "argmax_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
           "greedy_identical": bool((greedy == want).all()), "greedy_tokens": int(want.shape[1] - 8),
           "import_seconds": round(load_s, 2), "torch": torch.__version__,
           "transformers": transformers.__version__,
           "command": "python benchmarks/gpt2_agreement.py" + (" --smoke" if args.smoke else "")}
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
