"""The small token classifier every run trains: subword embeddings -> BiLSTM -> a label
per piece, trained on the first piece of each word (``xlcorpus finetune --task ner``
rows: ``input_ids``, ``attention_mask``, ``labels`` with -100 elsewhere, ``word_ids``).

One architecture and one training schedule for every method and baseline, seeded, so
the only thing that differs between two runs is the data. Zero-shot transfer comes
from the shared subword vocabulary: every run tokenizes with the reference model's
joint en/xx SentencePiece model, so names that the target copies or respells share
pieces with the English side.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

IGNORE_INDEX = -100  # the label torch's cross-entropy skips (what finetune writes)


@dataclass(frozen=True)
class TaggerConfig:
    vocab_size: int
    n_labels: int
    pad_id: int = 3  # the reference SentencePiece model's <pad>
    embed_dim: int = 64
    hidden: int = 96
    dropout: float = 0.25
    epochs: int = 6
    batch_size: int = 32
    lr: float = 3e-3


class Tagger(nn.Module):
    def __init__(self, cfg: TaggerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim, padding_idx=cfg.pad_id)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(2 * cfg.hidden, cfg.n_labels)

    def forward(self, input_ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.embed(input_ids))
        # packed: the backward direction starts at each row's last real piece, not at the padding
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        h, _ = self.lstm(packed)
        h, _ = nn.utils.rnn.pad_packed_sequence(h, batch_first=True, total_length=input_ids.shape[1])
        return self.out(self.drop(h))


@dataclass
class Encoded:
    """Windows as arrays, trimmed to the longest real window."""
    input_ids: np.ndarray  # (n, L) int64
    lengths: np.ndarray  # (n,) real pieces per window
    labels: np.ndarray  # (n, L) int64, IGNORE_INDEX where no word starts (or unlabelled)
    word_ids: np.ndarray  # (n, L) word index in its example, -1 on specials / padding
    example_ids: list[str]  # the example each window belongs to

    @classmethod
    def from_columns(cls, input_ids, attention_mask, labels, word_ids, example_ids) -> Encoded:
        mask = np.asarray(attention_mask, dtype=np.int64)
        lengths = mask.sum(1)
        width = int(lengths.max()) if len(lengths) else 1
        return cls(np.asarray(input_ids, dtype=np.int64)[:, :width], lengths,
                   np.asarray(labels, dtype=np.int64)[:, :width], np.asarray(word_ids, dtype=np.int64)[:, :width],
                   list(example_ids))

    @classmethod
    def from_dataset(cls, ds) -> Encoded:
        """A ``finetune --task ner`` split (``datasets.Dataset``); the example id is the
        window id without its ``#k`` suffix."""
        t = ds.data.table
        col = lambda name: t.column(name).to_pylist()
        return cls.from_columns(col("input_ids"), col("attention_mask"), col("labels"), col("word_ids"),
                                [i.rsplit("#", 1)[0] for i in col("id")])


def encode_words(sp, sentences: list[list[str]], word_labels: list[list[int]] | None = None,
                 pad_id: int = 3) -> Encoded:
    """Whitespace words -> one ``[bos] pieces [eos]`` row per sentence, the first piece
    of each word carrying its label (``word_labels``, else 0): the layout ``finetune
    --task ner`` writes (tests/test_downstream.py checks it against the CLI), for texts
    that have no dataset yet (translate-test's English translations). No windows: rows
    are as long as needed."""
    flat = [w for ws in sentences for w in ws]
    pieces = sp.encode(flat) if flat else []
    rows, labels, wids, at = [], [], [], 0
    for k, ws in enumerate(sentences):
        ids, lab, wid = [sp.bos_id()], [IGNORE_INDEX], [-1]
        for w, p in enumerate(pieces[at:at + len(ws)]):
            p = p or [sp.unk_id()]
            ids += p
            lab += [word_labels[k][w] if word_labels is not None else 0] + [IGNORE_INDEX] * (len(p) - 1)
            wid += [w] * len(p)
        at += len(ws)
        rows.append(ids + [sp.eos_id()])
        labels.append(lab + [IGNORE_INDEX])
        wids.append(wid + [-1])
    width = max((len(r) for r in rows), default=1)
    padded = lambda xs, v: [x + [v] * (width - len(x)) for x in xs]
    return Encoded(np.asarray(padded(rows, pad_id), dtype=np.int64).reshape(len(rows), width),
                   np.asarray([len(r) for r in rows], dtype=np.int64),
                   np.asarray(padded(labels, IGNORE_INDEX), dtype=np.int64).reshape(len(rows), width),
                   np.asarray(padded(wids, -1), dtype=np.int64).reshape(len(rows), width),
                   [str(k) for k in range(len(rows))])


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def train_tagger(data: Encoded, cfg: TaggerConfig, seed: int, device: str | None = None, log=None
                 ) -> tuple[Tagger, dict]:
    """Trains a fresh tagger on ``data`` (seeded: same data, seed and device -> same weights)."""
    dev = pick_device(device)
    torch.manual_seed(seed)
    model = Tagger(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    order_rng = torch.Generator().manual_seed(seed)
    ids, lengths, labels = (torch.from_numpy(a) for a in (data.input_ids, data.lengths, data.labels))
    n = len(ids)
    steps = cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size)
    # warm-up over a tenth of the steps, at least two (OneCycleLR divides by zero below that)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 4),
                                                pct_start=max(0.1, 2 / max(steps, 4)))
    t0, losses = time.perf_counter(), []
    model.train()
    for epoch in range(cfg.epochs):
        total, count = 0.0, 0
        for b in torch.randperm(n, generator=order_rng).split(cfg.batch_size):
            width = int(lengths[b].max())
            logits = model(ids[b, :width].to(dev), lengths[b])
            loss = loss_fn(logits.reshape(-1, cfg.n_labels), labels[b, :width].reshape(-1).to(dev))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            total, count = total + loss.item() * len(b), count + len(b)
        losses.append(round(total / max(count, 1), 4))
        if log:
            log(f"    epoch {epoch + 1}/{cfg.epochs} loss {losses[-1]:.4f}")
    model.eval()
    return model, {"windows": n, "steps": steps, "epoch_losses": losses, "train_s": round(time.perf_counter() - t0, 1),
                   "device": str(dev)}


@torch.no_grad()
def predict_word_tags(model: Tagger, data: Encoded, batch_size: int = 256) -> dict[str, dict[int, int]]:
    """Label id per word (at its first piece, i.e. where ``labels`` is not -100), per
    example; windows of one example are merged (finetune labels each word once)."""
    dev = next(model.parameters()).device
    out: dict[str, dict[int, int]] = {}
    ids, lengths = torch.from_numpy(data.input_ids), torch.from_numpy(data.lengths)
    for start in range(0, len(ids), batch_size):
        sl = slice(start, start + batch_size)
        width = int(lengths[sl].max())
        pred = model(ids[sl, :width].to(dev), lengths[sl]).argmax(-1).cpu().numpy()
        for r in range(pred.shape[0]):
            k = start + r
            words = out.setdefault(data.example_ids[k], {})
            at = np.nonzero(data.labels[k, :width] != IGNORE_INDEX)[0]
            for pos in at:
                words[int(data.word_ids[k, pos])] = int(pred[r, pos])
    return out


def save_tagger(model: Tagger, path: Path, label_names: list[str]) -> Path:
    torch.save({"config": asdict(model.cfg), "state_dict": model.state_dict(), "label_names": label_names}, path)
    return path


def load_tagger(path: Path, device: str | None = None) -> tuple[Tagger, list[str]]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    model = Tagger(TaggerConfig(**ck["config"]))
    model.load_state_dict(ck["state_dict"])
    return model.to(pick_device(device)).eval(), ck["label_names"]
