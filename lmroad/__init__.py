"""lmroad: the road of language models, from n-gram and RNN to Transformer, on minigrad."""
