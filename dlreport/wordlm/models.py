"""Language models with one interface: ``model(input, hidden) -> (logits, hidden)``.

``input`` is (time, batch) token ids; ``logits`` is (time, batch, ntoken), raw scores (the
example returns log_softmax; cross-entropy on the logits gives the same loss). ``last=n``
decodes only the last n positions, (n, batch, ntoken): the decoder (hidden x vocabulary per
position) is most of the cost, and positions that are only context need no logits. RNNs carry
``hidden``; the Transformer and the CNN ignore it and return None.

* ``RNNModel``: RNN_TANH, RNN_RELU, LSTM, GRU exactly as the example builds them.
* ``TransformerModel``: the example's model (sinusoidal positions, post-norm encoder), always
  with the causal mask, so position t never sees tokens after t (the example's generate.py
  ran it without the mask).
* ``GCNNModel``: gated convolutional LM (Dauphin et al. 2017 style): causal dilated 1-d
  convolutions with GLU gates and residual connections. Its receptive field is
  ``1 + sum((kernel_size - 1) * dilation)`` tokens: the output at t depends on tokens
  t - receptive_field + 1 .. t and nothing else.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


from dlreport.params import LMModelParams, RNNParams, TransformerParams

RNN_TYPES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")
MODEL_TYPES = RNN_TYPES + ("Transformer", "GCNN")


class LanguageModel(nn.Module):
    """What every model shares: ``features`` (the last layer's output before the vocabulary
    projection, (time, batch, ninp)) and ``decoder``; the training loop fuses the decoder
    with the loss (dlreport.wordlm.train.linear_cross_entropy)."""

    encoder: nn.Embedding
    decoder: nn.Linear

    def tie_and_init(self, tie_weights: bool) -> None:
        """The example's last steps of __init__: optionally share the embedding with the decoder
        (Press & Wolf 2016), then uniform(-0.1, 0.1) weights and a zero decoder bias."""
        if tie_weights:
            self.decoder.weight = self.encoder.weight
        initrange = 0.1
        nn.init.uniform_(self.encoder.weight, -initrange, initrange)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -initrange, initrange)

    def features(self, input: torch.Tensor, hidden=None, last: int | None = None):
        raise NotImplementedError

    def forward(self, input: torch.Tensor, hidden=None, last: int | None = None):
        features, hidden = self.features(input, hidden, last)
        return self.decoder(features), hidden


class RNNModel(LanguageModel):
    def __init__(self, rnn_type: str, ntoken: int, ninp: int, nhid: int, nlayers: int,
                 dropout: float = 0.5, tie_weights: bool = False):
        super().__init__()
        self.ntoken, self.rnn_type, self.nhid, self.nlayers = ntoken, rnn_type, nhid, nlayers
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        if rnn_type in ("LSTM", "GRU"):
            self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        else:
            nonlinearity = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}[rnn_type]
            self.rnn = nn.RNN(ninp, nhid, nlayers, nonlinearity=nonlinearity, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.tie_and_init(tie_weights)

    def features(self, input: torch.Tensor, hidden=None, last: int | None = None):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        return self.drop(last_positions(output, last)), hidden

    def init_hidden(self, bsz: int):
        weight = next(self.parameters())
        if self.rnn_type == "LSTM":
            return (weight.new_zeros(self.nlayers, bsz, self.nhid), weight.new_zeros(self.nlayers, bsz, self.nhid))
        return weight.new_zeros(self.nlayers, bsz, self.nhid)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term[: d_model // 2])
        self.register_buffer("pe", pe.unsqueeze(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.size(0)])


class TransformerModel(LanguageModel):
    def __init__(self, ntoken: int, ninp: int, nhead: int, nhid: int, nlayers: int,
                 dropout: float = 0.5, tie_weights: bool = False):
        super().__init__()
        self.ntoken, self.ninp = ntoken, ninp
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        layer = nn.TransformerEncoderLayer(ninp, nhead, nhid, dropout)
        self.transformer_encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.decoder = nn.Linear(ninp, ntoken)
        self.tie_and_init(tie_weights)

    def features(self, src: torch.Tensor, hidden=None, last: int | None = None):
        mask = nn.Transformer.generate_square_subsequent_mask(len(src), device=src.device)
        x = self.pos_encoder(self.encoder(src) * math.sqrt(self.ninp))
        output = self.transformer_encoder(x, mask=mask, is_causal=True)
        return last_positions(output, last), None


class GCNNModel(LanguageModel):
    def __init__(self, ntoken: int, ninp: int, nhid: int, kernel_size: int, dilations: list[int],
                 dropout: float = 0.2, tie_weights: bool = False):
        super().__init__()
        self.ntoken, self.kernel_size, self.dilations = ntoken, kernel_size, list(dilations)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.inp = nn.Conv1d(ninp, nhid, 1) if ninp != nhid else nn.Identity()
        self.convs = nn.ModuleList(nn.Conv1d(nhid, 2 * nhid, kernel_size, dilation=d) for d in dilations)
        self.out = nn.Conv1d(nhid, ninp, 1) if ninp != nhid else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.decoder = nn.Linear(ninp, ntoken)
        self.tie_and_init(tie_weights)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.kernel_size, self.dilations)

    def features(self, src: torch.Tensor, hidden=None, last: int | None = None):
        x = self.inp(self.drop(self.encoder(src)).permute(1, 2, 0))  # (batch, channels, time)
        for conv in self.convs:
            pad = (self.kernel_size - 1) * conv.dilation[0]
            x = x + F.glu(conv(self.drop(F.pad(x, (pad, 0)))), dim=1)  # causal: pad the past only
        return self.drop(self.out(last_positions(x, last, dim=2))).permute(2, 0, 1), None


def last_positions(output: torch.Tensor, last: int | None, dim: int = 0) -> torch.Tensor:
    """The last ``last`` time steps of ``output`` (time along ``dim``); all of them for None. No
    slice when nothing is cut: its backward would write the gradient into a zeroed full copy."""
    if last is None or last >= output.size(dim):
        return output
    return output.narrow(dim, output.size(dim) - last, last)


def receptive_field(kernel_size: int, dilations: list[int]) -> int:
    return 1 + sum((kernel_size - 1) * d for d in dilations)


def build_model(cfg: LMModelParams, ntoken: int) -> LanguageModel:
    """A model from one ``wordlm.models.<name>`` entry (plus ntoken)."""
    if isinstance(cfg, RNNParams):
        return RNNModel(cfg.type, ntoken, cfg.emsize, cfg.nhid, cfg.nlayers, cfg.dropout, cfg.tied)
    if isinstance(cfg, TransformerParams):
        return TransformerModel(ntoken, cfg.emsize, cfg.nhead, cfg.nhid, cfg.nlayers, cfg.dropout, cfg.tied)
    return GCNNModel(ntoken, cfg.emsize, cfg.nhid, cfg.kernel_size, cfg.layer_dilations(), cfg.dropout, cfg.tied)


def is_windowed(model: LanguageModel) -> bool:
    """True for the models that see a window of tokens (Transformer, CNN), not a carried state."""
    return not isinstance(model, RNNModel)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
