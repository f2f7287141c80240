"""Step 4: the end of the road, a baby GPT on Shakespeare, with nanoGPT's CPU settings.

    python examples/04_baby_gpt.py [--device cpu|cuda] [--data PATH] [--iters 2000] [--quick] [--threads N]

nanoGPT's README suggests, for a laptop CPU: 4 layers, 4 heads, 128 wide,
block 64, batch 12, dropout 0.0, 2000 iterations with the learning rate
decaying over all of them (AdamW, lr 1e-3 -> 1e-4, beta2 0.99, warmup 100,
weight decay 0.1, gradient clipping 1.0). On its Shakespeare text that reaches
a validation loss of about 1.88 nats/char. (lmroad's Shakespeare is the
complete works split by play, a different validation text, so expect a
similar but not the same number.)

Unlike the LSTM, the Transformer has no state to carry: every batch is B
random windows, and one forward pass trains all T next-character
predictions at once, each position attending to itself and the past.
The script prints its speed and an estimate of the total time after a few
iterations. ``--quick`` runs 10 iterations on a tiny generated text.
"""

import math
import time

import numpy as np
from _common import example_parser, parse_example_args  # the flags all examples share

import minigrad as mg
from lmroad.data import build_tokenizer, load_corpus, random_windows
from lmroad.models import TransformerLM
from lmroad.train import evaluate
from minigrad import optim

parser = example_parser(__doc__, quick="10 iterations on a tiny text (CI)")
parser.add_argument("--data", default=None, help="a UTF-8 text file (default: the Shakespeare corpus)")
parser.add_argument("--iters", type=int, default=2000)
args = parse_example_args(parser)
dev = str(mg.device(args.device))
mg.manual_seed(1337)

corpus = load_corpus(args.data or ("tiny" if args.quick else "shakespeare"))
tok = build_tokenizer("char", corpus)
train_ids, val_ids = tok.encode(corpus.train), tok.encode(corpus.val)
iters = 10 if args.quick else args.iters
batch_size, block_size = 12, 64
eval_interval, eval_iters = max(1, min(250, iters // 2)), 2 if args.quick else 20

model = TransformerLM(vocab_size=tok.vocab_size, n_layer=4, n_head=4, n_embd=128,
                      block_size=block_size, dropout=0.0).to(dev)
print(f"{corpus}; baby GPT with {model.num_parameters():,} parameters")
opt = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
rng = np.random.default_rng(1337)


def val_loss() -> float:
    # the first eval_iters batches of consecutive validation windows (the same text every time)
    n = eval_iters * batch_size * block_size + 1
    return evaluate(model, val_ids[:n], block_size=block_size, batch_size=batch_size, device=dev)["loss"]


t0 = time.perf_counter()
for it in range(iters + 1):
    if it % eval_interval == 0 or it == iters:
        print(f"iter {it:5d}  val loss {val_loss():.4f} nats/char")
    if it == iters:
        break
    lr = optim.cosine_with_warmup(it, 1e-3, 100, iters, 1e-4)   # warmup, then cosine to 1e-4
    for group in opt.param_groups:
        group["lr"] = lr
    x, y = random_windows(train_ids, batch_size, block_size, dev, rng=rng)   # (B, T) each
    _, loss = model(x, y)
    opt.zero_grad()
    loss.backward()
    optim.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if it == 5:                                                     # first iterations are warm-up
        t5 = time.perf_counter()
    if it == 15 or (args.quick and it == iters - 1):
        per_iter = (time.perf_counter() - (t5 if it == 15 else t0)) / (10 if it == 15 else iters)
        print(f"speed: {per_iter * 1000:.0f} ms/iter, {batch_size * block_size / per_iter:,.0f} chars/s; "
              f"{iters} iterations take about {per_iter * iters / 60:.1f} min (plus evaluation)")

# the final figure over the whole validation text (467k characters: about 20 s on one CPU core),
# as `python -m lmroad eval` reports it; --quick keeps the short slice
final = val_loss() if args.quick else evaluate(model, val_ids, block_size=block_size,
                                                  batch_size=64, device=dev)["loss"]
print(f"trained {iters} iterations in {(time.perf_counter() - t0) / 60:.1f} min; final val loss "
      f"{final:.4f} nats/char ({final / math.log(2):.3f} bits/char)"
      + ("" if args.quick else f" over all {len(val_ids):,} validation characters"))
out = model.generate(mg.tensor(tok.encode(corpus.val[:8])[None, :], device=dev),
                     max_new_tokens=60 if args.quick else 300, temperature=0.8, top_k=40, seed=0)
print(tok.decode(out.numpy()[0]))
