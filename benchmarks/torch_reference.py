"""The benchmark workloads written in PyTorch, for the side-by-side runs.

Same architectures as lmroad's models (pre-LN GPT with tied head; char
LSTM/RNN LMs stepping a cell per time step), so the timing compares engines,
not models. Imported only by the benchmark scripts; PyTorch is never a
dependency of the project.

The GPT's MLP GELU is PyTorch's ``approximate`` argument: ``gelu="tanh"``
(GPT-2's approximation, lmroad's ``TransformerLM`` default) or ``"none"``
(exact, nanoGPT's ``nn.GELU()``); workloads.py passes the one minigrad runs.
"""

from __future__ import annotations

import math


def build(torch):
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, C, nh, gelu="tanh"):
            super().__init__()
            self.nh, self.gelu = nh, gelu
            self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
            self.qkv, self.proj = nn.Linear(C, 3 * C), nn.Linear(C, C)
            self.fc, self.fc_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, C = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, self.nh, C // self.nh).transpose(1, 2) for t in (q, k, v))
            # eager attention (the same arithmetic minigrad does), not a fused kernel
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.nh)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.proj(y)
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate=self.gelu))

    class GPT(nn.Module):
        def __init__(self, vocab, n_layer, n_head, n_embd, block, gelu="tanh"):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block, n_embd)
            self.blocks = nn.ModuleList(Block(n_embd, n_head, gelu) for _ in range(n_layer))
            self.ln_f = nn.LayerNorm(n_embd)
            self.head = nn.Linear(n_embd, vocab, bias=False)
            self.head.weight = self.wte.weight
            # GPT-2 initialisation, as TransformerLM: N(0, 0.02²), biases 0, and the two
            # residual projections per block N(0, (0.02/√(2·n_layer))²), so both models
            # start from the same loss (ln V) and the timings train comparable weights
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, 0.0, 0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            for b in self.blocks:
                for w in (b.proj.weight, b.fc_proj.weight):
                    nn.init.normal_(w, 0.0, 0.02 / math.sqrt(2 * n_layer))

        def forward(self, idx, targets):
            B, T = idx.shape
            x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
            for b in self.blocks:
                x = b(x)
            logits = self.head(self.ln_f(x))
            return F.cross_entropy(logits.view(B * T, -1), targets.view(-1))

    class CharRNN(nn.Module):
        """Embedding -> stacked cells stepped one time step at a time -> Linear."""

        def __init__(self, vocab, hidden, layers, cell, fused=False):
            super().__init__()
            self.kind, self.fused, self.layers, self.hidden = cell, fused, layers, hidden
            self.emb = nn.Embedding(vocab, hidden)
            if fused:
                fused_cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
                self.rnn = fused_cls(hidden, hidden, layers, batch_first=True)
            else:
                Cell = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}[cell]
                self.cells = nn.ModuleList(Cell(hidden, hidden) for _ in range(layers))
            self.out = nn.Linear(hidden, vocab)

        def forward(self, idx, targets):
            B, T = idx.shape
            x = self.emb(idx)
            if self.fused:
                y, _ = self.rnn(x)
            else:
                h = [x.new_zeros(B, self.hidden) for _ in range(self.layers)]
                c = [x.new_zeros(B, self.hidden) for _ in range(self.layers)]
                ys = []
                for t in range(T):
                    inp = x[:, t]
                    for i, cell in enumerate(self.cells):
                        if self.kind == "lstm":
                            h[i], c[i] = cell(inp, (h[i], c[i]))
                        else:
                            h[i] = cell(inp, h[i])
                        inp = h[i]
                    ys.append(inp)
                y = torch.stack(ys, 1)
            logits = self.out(y)
            return F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1))

    return GPT, CharRNN


def weight_decay_groups(model, weight_decay: float) -> list[dict]:
    """AdamW parameter groups as ``LanguageModel.configure_optimizers`` (nanoGPT):
    matrices and embeddings (ndim >= 2) decay, biases and norm weights do not."""
    params = list(model.parameters())          # a tied weight appears once
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
