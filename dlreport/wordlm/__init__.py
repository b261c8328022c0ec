"""The word-level language models (after the PyTorch word_language_model example).

  sample   the generated offline ``sample`` corpus (WikiText format, short- and long-range structure)
  corpus   reading the corpus (WikiText-2 zip or text folder), vocabulary, batchify
  models   RNN_TANH/RNN_RELU/LSTM/GRU, causal Transformer, gated causal CNN (GCNN)
  train    the training loop, evaluation with context, checkpoints, DVCLive
  generate text generation from a trained model
  probe    the context probe (truncated and perturbed context)
"""
