"""Step 3: a character-level LSTM language model on Shakespeare (or your text).

    python examples/03_char_lstm.py [--device cpu|cuda] [--data PATH] [--iters N] [--quick] [--threads N]

From step 2 to a real model: the library's ``LSTMLM`` (embedding -> LSTM ->
linear), real text, and *truncated backpropagation through time*: the text is
read as B parallel lanes of consecutive windows (``StreamBatcher``); the
hidden state at the end of one window starts the next, detached, so memory
flows across windows while gradients stop at the window boundary.
Validation loss is in nats per character (bits per character = nats / ln 2).
``--quick`` trains a few steps on a tiny generated text (no download).
"""

import math
import time

from _common import example_parser, parse_example_args  # the flags all examples share

import minigrad as mg
from lmroad.data import StreamBatcher, build_tokenizer, load_corpus
from lmroad.models import LSTMLM
from lmroad.train import evaluate
from minigrad import optim

parser = example_parser(__doc__, quick="tiny text, tiny model, a few steps (CI)")
parser.add_argument("--data", default=None, help="a UTF-8 text file (default: the Shakespeare corpus)")
parser.add_argument("--iters", type=int, default=1500)
args = parse_example_args(parser)
dev = str(mg.device(args.device))
mg.manual_seed(1337)

corpus = load_corpus(args.data or ("tiny" if args.quick else "shakespeare"))
tok = build_tokenizer("char", corpus)
train_ids, val_ids = tok.encode(corpus.train), tok.encode(corpus.val)
B, T = (8, 16) if args.quick else (32, 64)                  # lanes, window (BPTT length)
iters = 10 if args.quick else args.iters
model = LSTMLM(vocab_size=tok.vocab_size, n_embd=64, hidden_size=32 if args.quick else 256).to(dev)
print(f"{corpus}; LSTM with {model.num_parameters():,} parameters")

opt = optim.AdamW(optim.param_groups_for_weight_decay(model, 0.1), lr=2e-3)
batches = StreamBatcher(train_ids, B, T, dev)
state, t0 = None, time.perf_counter()
for it in range(1, iters + 1):
    x, y, reset = batches.next_batch()                     # (B, T) each; reset: a new pass began
    if reset:
        state = None
    _, loss = model(x, y, state=state)                     # starts from the carried state
    state = model.detach_state(model.last_state)           # keep the values, cut the graph
    opt.zero_grad()
    loss.backward()
    optim.clip_grad_norm_(model.parameters(), 1.0)         # LSTMs ease vanishing, not exploding
    opt.step()
    if it % max(1, iters // 5) == 0 or it == iters:
        ev = evaluate(model, val_ids[:20_001 if not args.quick else 2_001], block_size=T,
                      batch_size=B, device=dev)
        speed = it * B * T / (time.perf_counter() - t0)
        print(f"iter {it:5d}  train {loss.item():.3f}  val {ev['loss']:.3f} nats/char "
              f"({ev['loss'] / math.log(2):.3f} bits/char)  {speed:,.0f} chars/s")

prompt = mg.tensor(tok.encode("ROMEO:" if "ROMEO" in corpus.train else corpus.val[:4])[None, :], device=dev)
out = model.generate(prompt, max_new_tokens=60 if args.quick else 300, temperature=0.8, top_k=40, seed=0)
print(tok.decode(out.numpy()[0]))
