"""Recipe of the reference translation model ``transforms/models/synth-en-xx``.

    python bench/train_reference_mt.py [--out transforms/models/synth-en-xx] [--minutes 19]
        [--pairs 150000] [--marked 0.2] [--marked-all 0.15] [--seed 1] [--threads 1] [--eval 1000]

The defaults are the shipped model's recipe (about 21 minutes on one core of a shared
2-core CPU: ~25 s data and SentencePiece, 19 min training, ~15 s conversion and evaluation).
One torch thread: with other processes on the 2 cores, 2 threads ran 3x slower per step.

Steps, all seeded:
1. ``synthetic_pair.generate(pairs, seed, "train")``; a ``--marked`` share of the
   examples is a marked copy (``synthetic_pair.marked``: ``[ ... ]`` around one entity
   on both sides; what constrained projection scores) and a ``--marked-all`` share is
   the copy with every entity marked (``synthetic_pair.marked_all``; what the marker
   method translates), so the model learns to carry the markers, as EasyProject
   fine-tunes NLLB with all entities marked. Unmarked pairs stay the majority.
2. A joint SentencePiece BPE model (``--vocab`` pieces; unigram cut this data into twice
   as many pieces) where ``▁[`` and ``▁]`` are user-defined pieces, so a marker is
   always one piece and never changes the pieces of the words around it.
3. A small pre-norm Transformer encoder-decoder in plain torch whose layout is the
   one CTranslate2's ``TransformerSpec`` runs (fused QKV, pre-norm, final norms,
   tied embeddings, position table given explicitly), trained with label smoothing
   under a hard wall-clock budget (``--minutes``; the learning-rate schedule follows
   the elapsed fraction of it).
4. The weights are copied into ``ctranslate2.specs.TransformerSpec`` and saved with
   int8 quantization; a float32 copy is checked against torch (``score_batch`` vs
   torch log-probs) before the int8 save.
5. Evaluation on ``--eval`` held-out pairs (``split="test"``: every sentence has a
   held-out name word): exact match of the unmarked translation (greedy and beam 4),
   the rate at which a marked source yields exactly one ``[ ]`` pair whose
   word span is the gold word span, and the rates at which an all-entities-marked
   source yields as many ``[ ]`` pairs as entities / the exact gold marked target.
   Numbers go to ``eval.json`` in the model dir.

Source sequences are SentencePiece pieces only (no ``</s>``, no language token);
the decoder starts from ``<s>``: the "Marian / none" convention of the MT backend.
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/ holds a tokenize.py that would shadow the stdlib module torch imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import json
import math
import random
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "transforms" / "models" / "synth-en-xx"
MARK_PIECES = ("▁[", "▁]")
PAD, BOS, EOS = 3, 1, 2


def _synthetic():
    from bench import synthetic_pair  # the repository root is on sys.path (above)

    return synthetic_pair


# --- data ---------------------------------------------------------------------------
def make_examples(n_pairs: int, seed: int, marked_share: float, split: str = "train",
                  marked_all_share: float = 0.0):
    sp = _synthetic()
    rng = random.Random(f"marking:{split}:{seed}")
    out = []
    for p in sp.generate(n_pairs, seed, split):
        r = rng.random()
        if p.src_spans and r < marked_all_share:
            out.append(sp.marked_all(p))
        elif p.src_spans and r < marked_all_share + marked_share:
            out.append(sp.marked(p, rng.randrange(len(p.src_spans))))
        else:
            out.append((p.src_text, p.tgt_text))
    return out


def train_spm(examples, prefix: Path, vocab: int, seed: int):
    import sentencepiece as spm

    rng = random.Random(seed)
    sample = rng.sample(examples, min(len(examples), 60000))
    text = prefix.with_suffix(".txt")
    with text.open("w", encoding="utf-8") as f:
        for s, t in sample:
            f.write(s + "\n" + t + "\n")
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(prefix), vocab_size=vocab, model_type="bpe",
        character_coverage=1.0, user_defined_symbols=list(MARK_PIECES),
        unk_id=0, bos_id=BOS, eos_id=EOS, pad_id=PAD, input_sentence_size=0, shuffle_input_sentence=False, num_threads=2,
        minloglevel=2)
    text.unlink()
    return spm.SentencePieceProcessor(model_file=str(prefix) + ".model")


# --- model (CTranslate2 TransformerSpec layout) ------------------------------------
def build_model(vocab: int, d: int, heads: int, ffn: int, enc_layers: int, dec_layers: int,
                dropout: float, max_len: int = 256):
    import torch
    import torch.nn.functional as F
    from torch import nn

    eps = 1e-6

    class Attention(nn.Module):
        def __init__(self, self_attn: bool):
            super().__init__()
            self.self_attn = self_attn
            self.layer_norm = nn.LayerNorm(d, eps=eps)
            if self_attn:
                self.qkv = nn.Linear(d, 3 * d)
            else:
                self.q = nn.Linear(d, d)
                self.kv = nn.Linear(d, 2 * d)
            self.out = nn.Linear(d, d)

        def forward(self, x, memory=None, mask=None):
            h = self.layer_norm(x)
            b, n, _ = h.shape
            if self.self_attn:
                q, k, v = self.qkv(h).chunk(3, dim=-1)
            else:
                q = self.q(h)
                k, v = self.kv(memory).chunk(2, dim=-1)
            split = lambda t: t.view(b, -1, heads, d // heads).transpose(1, 2)
            a = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=mask,
                                               dropout_p=dropout if self.training else 0.0)
            return x + F.dropout(self.out(a.transpose(1, 2).reshape(b, n, d)), dropout, self.training)

    class FFN(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer_norm = nn.LayerNorm(d, eps=eps)
            self.w1 = nn.Linear(d, ffn)
            self.w2 = nn.Linear(ffn, d)

        def forward(self, x):
            h = F.relu(self.w1(self.layer_norm(x)))
            return x + F.dropout(self.w2(F.dropout(h, dropout, self.training)), dropout, self.training)

    class EncLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attention = Attention(True)
            self.ffn = FFN()

        def forward(self, x, mask):
            return self.ffn(self.self_attention(x, mask=mask))

    class DecLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.self_attention = Attention(True)
            self.attention = Attention(False)
            self.ffn = FFN()

        def forward(self, x, memory, self_mask, mem_mask):
            x = self.self_attention(x, mask=self_mask)
            return self.ffn(self.attention(x, memory=memory, mask=mem_mask))

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.d = d
            self.embed = nn.Embedding(vocab, d)
            nn.init.normal_(self.embed.weight, std=d ** -0.5)
            pos = torch.arange(max_len, dtype=torch.float32)[:, None]
            div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
            pe = torch.zeros(max_len, d)
            pe[:, 0::2] = torch.sin(pos * div)
            pe[:, 1::2] = torch.cos(pos * div)
            self.register_buffer("pe", pe)
            self.enc = nn.ModuleList(EncLayer() for _ in range(enc_layers))
            self.dec = nn.ModuleList(DecLayer() for _ in range(dec_layers))
            self.enc_norm = nn.LayerNorm(d, eps=eps)
            self.dec_norm = nn.LayerNorm(d, eps=eps)
            self.config = {"vocab": vocab, "d": d, "heads": heads, "ffn": ffn, "enc_layers": enc_layers,
                               "dec_layers": dec_layers, "dropout": dropout, "max_len": max_len}

        def embed_seq(self, ids):
            x = self.embed(ids) * math.sqrt(self.d) + self.pe[: ids.shape[1]]
            return F.dropout(x, dropout, self.training)

        def encode(self, src):
            mask = (src != PAD)[:, None, None, :]
            x = self.embed_seq(src)
            for layer in self.enc:
                x = layer(x, mask)
            return self.enc_norm(x), mask

        def forward(self, src, tgt_in):
            memory, mem_mask = self.encode(src)
            n = tgt_in.shape[1]
            causal = torch.ones(n, n, dtype=torch.bool).tril()[None, None]
            x = self.embed_seq(tgt_in)
            for layer in self.dec:
                x = layer(x, memory, causal, mem_mask)
            return self.dec_norm(x) @ self.embed.weight.T  # tied output projection

    return Seq2Seq()


def batches(src_ids, tgt_ids, max_tokens: int, rng: random.Random):
    """Length-bucketed batches of about ``max_tokens`` (source + target) tokens, shuffled."""
    order = sorted(range(len(src_ids)), key=lambda i: (len(tgt_ids[i]), len(src_ids[i]), rng.random()))
    out, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, len(src_ids[i]), len(tgt_ids[i]) + 1)
        if cur and m * 2 * (len(cur) + 1) > max_tokens:
            out.append(cur)
            cur, m = [], max(len(src_ids[i]), len(tgt_ids[i]) + 1)
        cur.append(i)
        cur_max = m
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def collate(idx, src_ids, tgt_ids):
    import torch

    ns = max(len(src_ids[i]) for i in idx)
    nt = max(len(tgt_ids[i]) for i in idx) + 1
    src = torch.full((len(idx), ns), PAD, dtype=torch.long)
    tin = torch.full((len(idx), nt), PAD, dtype=torch.long)
    tout = torch.full((len(idx), nt), PAD, dtype=torch.long)
    for r, i in enumerate(idx):
        s, t = src_ids[i], tgt_ids[i]
        src[r, : len(s)] = torch.tensor(s)
        tin[r, : len(t) + 1] = torch.tensor([BOS] + t)
        tout[r, : len(t) + 1] = torch.tensor(t + [EOS])
    return src, tin, tout


def train(model, src_ids, tgt_ids, args, log):
    import torch
    import torch.nn.functional as F

    rng = random.Random(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-9, weight_decay=0.0)
    budget = args.minutes * 60.0
    start = time.monotonic()
    step, epoch, seen, done = 0, 0, 0, False
    ema = None
    while not done:
        epoch += 1
        for idx in batches(src_ids, tgt_ids, args.batch_tokens, rng):
            frac = (time.monotonic() - start) / budget
            if frac >= 1.0 or (args.max_steps and step >= args.max_steps):
                done = True
                break
            warm = min(1.0, (step + 1) / args.warmup)
            lr = args.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
            for g in opt.param_groups:
                g["lr"] = lr
            src, tin, tout = collate(idx, src_ids, tgt_ids)
            logits = model(src, tin)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1),
                                   ignore_index=PAD, label_smoothing=args.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += len(idx)
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if step % 100 == 0:
                log(f"step {step} epoch {epoch} pairs {seen} loss {ema:.3f} lr {lr:.2e} "
                    f"elapsed {time.monotonic() - start:.0f}s")
    return {"steps": step, "epochs_started": epoch, "pairs_seen": seen, "train_seconds": round(time.monotonic() - start, 1),
                "final_loss": round(ema or 0.0, 4)}


# --- conversion ----------------------------------------------------------------------
def to_spec(model, vocab_tokens: list[str], alignment_heads: int):
    import ctranslate2
    from ctranslate2.specs import common_spec, transformer_spec

    cfg = model.config
    spec = transformer_spec.TransformerSpec.from_config(
        (cfg["enc_layers"], cfg["dec_layers"]), cfg["heads"], pre_norm=True,
        activation=common_spec.Activation.RELU, alignment_layer=-1, alignment_heads=alignment_heads)
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}

    def ln(s, name):
        s.gamma, s.beta = sd[name + ".weight"], sd[name + ".bias"]

    def lin(s, name):
        s.weight, s.bias = sd[name + ".weight"], sd[name + ".bias"]

    def attn(s, name, self_attn):
        ln(s.layer_norm, name + ".layer_norm")
        if self_attn:
            lin(s.linear[0], name + ".qkv")
        else:
            lin(s.linear[0], name + ".q")
            lin(s.linear[1], name + ".kv")
        lin(s.linear[-1], name + ".out")

    def ffn(s, name):
        ln(s.layer_norm, name + ".layer_norm")
        lin(s.linear_0, name + ".w1")
        lin(s.linear_1, name + ".w2")

    emb, pe = sd["embed.weight"], sd["pe"]
    spec.encoder.embeddings[0].weight = emb
    spec.encoder.position_encodings.encodings = pe
    ln(spec.encoder.layer_norm, "enc_norm")
    for i, layer in enumerate(spec.encoder.layer):
        attn(layer.self_attention, f"enc.{i}.self_attention", True)
        ffn(layer.ffn, f"enc.{i}.ffn")
    spec.decoder.embeddings.weight = emb
    spec.decoder.position_encodings.encodings = pe
    ln(spec.decoder.layer_norm, "dec_norm")
    spec.decoder.projection.weight = emb
    spec.decoder.projection.bias = np.zeros(emb.shape[0], dtype=np.float32)
    for i, layer in enumerate(spec.decoder.layer):
        attn(layer.self_attention, f"dec.{i}.self_attention", True)
        attn(layer.attention, f"dec.{i}.attention", False)
        ffn(layer.ffn, f"dec.{i}.ffn")
    spec.config.layer_norm_epsilon = 1e-6
    spec.register_source_vocabulary(vocab_tokens)
    spec.register_target_vocabulary(vocab_tokens)
    assert ctranslate2.__version__
    return spec


def check_parity(model, ct2_dir: Path, sp, pairs, log) -> float:
    """Max |torch - CTranslate2 float32| of per-token log-probs on a few pairs."""
    import ctranslate2
    import torch

    tr = ctranslate2.Translator(str(ct2_dir), device="cpu", compute_type="float32")
    src = [sp.encode(s, out_type=str) for s, _ in pairs]
    tgt = [sp.encode(t, out_type=str) for _, t in pairs]
    res = tr.score_batch(src, tgt)
    worst = 0.0
    model.eval()
    with torch.no_grad():
        for (s, t), r in zip(pairs, res):
            si = torch.tensor([sp.encode(s)])
            ti = sp.encode(t)
            logp = torch.log_softmax(model(si, torch.tensor([[BOS] + ti])), -1)[0]
            ref = logp[torch.arange(len(ti) + 1), torch.tensor(ti + [EOS])].numpy()
            worst = max(worst, float(np.abs(ref - np.array(r.log_probs)).max()))
    log(f"torch vs CTranslate2 float32 max |dlogp| = {worst:.2e}")
    return worst


def save_spec(spec, out: Path, quantization: str | None):
    import shutil

    tmp = out.parent / (out.name + ".tmp-ct2")
    if tmp.exists():
        shutil.rmtree(tmp)
    spec.validate()
    spec.optimize(quantization=quantization)
    tmp.mkdir(parents=True)
    spec.save(str(tmp))
    return tmp


# --- evaluation ----------------------------------------------------------------------
def evaluate(model_dir: Path, n: int, seed: int, log, threads: int = 2) -> dict:
    import ctranslate2
    import sentencepiece as spm

    syn = _synthetic()
    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "spm.model"))
    tr = ctranslate2.Translator(str(model_dir), device="cpu", compute_type="int8", intra_threads=threads)
    pairs = syn.generate(n, seed, "test")
    enc = lambda texts: [sp.encode(t, out_type=str) for t in texts]
    dec = lambda hyps: [sp.decode(h.hypotheses[0]) for h in hyps]
    out: dict = {"held_out_pairs": n, "split": "test", "seed": seed}
    t0 = time.monotonic()
    kw = {"max_batch_size": 256, "max_decoding_length": 160}
    greedy = dec(tr.translate_batch(enc([p.src_text for p in pairs]), beam_size=1, **kw))
    out["greedy_sentences_per_s"] = round(n / (time.monotonic() - t0), 1)
    beam = dec(tr.translate_batch(enc([p.src_text for p in pairs]), beam_size=4, **kw))
    out["exact_match_greedy"] = round(sum(h == p.tgt_text for h, p in zip(greedy, pairs)) / n, 4)
    out["exact_match_beam4"] = round(sum(h == p.tgt_text for h, p in zip(beam, pairs)) / n, 4)
    ref_tok = sum(len(p.tgt_text.split()) for p in pairs)
    out["word_accuracy_beam4"] = round(sum(sum(a == b for a, b in zip(h.split(), p.tgt_text.split()))
                                           for h, p in zip(beam, pairs)) / ref_tok, 4)
    # markers: one entity per sentence that has any (chosen by a seeded rng)
    rng = random.Random(f"eval-marking:{seed}")
    items = [(p, rng.randrange(len(p.src_spans))) for p in pairs if p.src_spans]
    marked = [syn.marked(p, i) for p, i in items]
    hyps = dec(tr.translate_batch(enc([m[0] for m in marked]), beam_size=4, **kw))
    one_pair = right_span = exact = unmarked_same = 0
    for (p, i), (ms, mt), h in zip(items, marked, hyps):
        exact += h == mt
        try:
            plain, spans = syn.parse_markers(h)
        except ValueError:
            continue
        if len(spans) != 1:
            continue
        one_pair += 1
        unmarked_same += plain == p.tgt_text
        s, e, _ = p.tgt_word_spans[i]
        right_span += plain == p.tgt_text and spans[0] == (s, e)
    m = len(items)
    out.update(marked_sentences=m, marker_one_pair_rate=round(one_pair / m, 4),
               marker_gold_span_rate=round(right_span / m, 4), marked_exact_match=round(exact / m, 4),
               marked_translation_unchanged_rate=round(unmarked_same / m, 4))
    # all entities marked at once (the marker method's input)
    items = [p for p in pairs if p.src_spans]
    marked = [syn.marked_all(p) for p in items]
    hyps = dec(tr.translate_batch(enc([m[0] for m in marked]), beam_size=4, **kw))
    count_ok = gold_spans = exact = 0
    for p, (ms, mt), h in zip(items, marked, hyps):
        exact += h == mt
        try:
            plain, spans = syn.parse_markers(h)
        except ValueError:
            continue
        count_ok += len(spans) == len(p.src_spans)
        gold_spans += plain == p.tgt_text and sorted(spans) == sorted((s, e) for s, e, _ in p.tgt_word_spans)
    m = len(items)
    out.update(all_marked_sentences=m, all_marked_count_rate=round(count_ok / m, 4),
               all_marked_gold_spans_rate=round(gold_spans / m, 4), all_marked_exact_match=round(exact / m, 4))
    # examples of errors, for the model card
    out["examples"] = [{"src": p.src_text, "ref": p.tgt_text, "hyp": h}
                       for p, h in zip(pairs, beam) if h != p.tgt_text][:5]
    log(json.dumps({k: v for k, v in out.items() if k != "examples"}))
    return out


CARD = """# synth-en-xx: reference translation model for label projection

A small Transformer encoder-decoder (CTranslate2, int8) that translates the project's
synthetic English-like language (`en`) into its synthetic target language (`xx`),
both defined by `bench.synthetic_pair`. It exists so that label
projection (`transforms/stages/project/`) and its benchmark can run offline on a real
model whose gold target spans are known by construction. It knows nothing else:
real English gives garbage.

## Files
- `model.bin`, `config.json`, `shared_vocabulary.json`: CTranslate2 {ct2} `TransformerSpec`
  (pre-norm, {enc} encoder / {dec} decoder layers, d_model {d}, {heads} heads, FFN {ffn},
  tied embeddings, sinusoidal position table of {max_len} positions), weights int8.
- `spm.model`: the joint SentencePiece BPE model ({vocab} pieces). The projection
  markers are the single pieces `▁[` and `▁]` (user-defined symbols).
- `eval.json`: the full recipe arguments, training statistics and evaluation.

## Use
```python
import ctranslate2, sentencepiece as spm
tr = ctranslate2.Translator("transforms/models/synth-en-xx", compute_type="int8")
sp = spm.SentencePieceProcessor(model_file="transforms/models/synth-en-xx/spm.model")
src = sp.encode("Harerd visits Phaistem Puphaick .", out_type=str)  # no </s>, no language token
out = tr.translate_batch([src], beam_size=4)[0].hypotheses[0]
sp.decode(out)  # "Harerdeka Faistem Pufaikkero zavezni ."
```
Source = pieces only, the decoder starts from `<s>` automatically (the "Marian / none"
vocabulary convention). `score_batch`, `return_attention=True` (mean of the {heads}
heads of the last decoder layer's cross-attention) and `return_logits_vocab` work.
A marked source (`[ Harerd ] visits ...`) is translated with the markers around the
whole target word(s) of the entity, glued case suffix included (`[ Harerdeka ] ...`).

## Recipe
```
{recipe}
```
Seed {seed}; torch {torch}, {threads} thread(s). Data: {pairs} generated training pairs
(`synthetic_pair.generate(n, seed={seed}, split="train")`), {marked_pct} of them replaced by
a marked copy (`[ ]` around one random entity on both sides) and {marked_all_pct} by the
copy with every entity marked (`synthetic_pair.marked_all`). Training stops at a
wall-clock budget ({minutes} min): it ran {steps} steps, {seen} pair views in
{train_s} s (final smoothed loss {loss}). Total recipe time {total_s} s, on a 2-core
CPU shared with other jobs. model.bin: {size_mb:.2f} MB. Before quantization the
CTranslate2 float32 model reproduced the torch log-probs to {parity:.1e}.

## Evaluation (held-out)
{n_eval} pairs of `split="test"` (seed {eval_seed}): every sentence holds at least one
name word never seen in training.

| metric | value |
|---|---|
| exact match, unmarked, beam 4 | {em4} |
| exact match, unmarked, greedy | {em1} |
| word accuracy (position-wise), beam 4 | {wacc} |
| marked input -> exactly one `[ ]` pair | {one_pair} |
| ... and it surrounds the gold word span (and the rest is the exact translation) | {gold_span} |
| marked output equals the gold marked target | {marked_em} |
| all entities marked -> as many `[ ]` pairs as entities | {all_count} |
| ... the pairs surround the gold word spans (and the rest is the exact translation) | {all_gold} |
| all-marked output equals the gold all-marked target | {all_em} |
| greedy speed (int8, {threads} thread) | {speed} sentences/s |

```json
{json}
```

## Limits
- Only the synthetic language pair, only en -> xx; sentences like the generator's
  (one clause, at most one "that"-clause, up to ~25 tokens).
- Errors concentrate on the spelling of unseen names (transliteration and piece
  copying) and on long sentences; the model was trained on one CPU for minutes.
- The training time, and so the exact weights, depend on the machine: the budget is
  wall-clock. `--max-steps` fixes the number of steps for a reproducible rerun.

## Licence
Apache-2.0, like the project: the data, recipe and weights are the project's own.
"""


def write_card(out: Path, report: dict) -> None:
    a, tr, ev = report["args"], report["training"], report.get("eval", {})
    summary = {k: v for k, v in ev.items() if k != "examples"}
    text = CARD.format(
        ct2=report["ctranslate2"], enc=a["enc_layers"], dec=a["dec_layers"], d=a["d_model"], heads=a["heads"],
        ffn=a["ffn"], max_len=256, vocab=a["vocab"], recipe=report["recipe"], seed=a["seed"],
        torch=report["torch"], threads=a["threads"], pairs=a["pairs"], marked_pct=f"{a['marked']:.0%}",
        marked_all_pct=f"{a.get('marked_all', 0.0):.0%}", all_count=ev.get("all_marked_count_rate", "-"),
        all_gold=ev.get("all_marked_gold_spans_rate", "-"), all_em=ev.get("all_marked_exact_match", "-"),
        minutes=a["minutes"], steps=tr["steps"], seen=tr["pairs_seen"], train_s=tr["train_seconds"],
        loss=tr["final_loss"], total_s=report["total_seconds"], size_mb=report["model_bin_bytes"] / 1e6,
        parity=report["torch_ct2_float32_max_abs_logprob_diff"], n_eval=ev.get("held_out_pairs", 0),
        eval_seed=ev.get("seed", "-"), em4=ev.get("exact_match_beam4", "-"), em1=ev.get("exact_match_greedy", "-"),
        wacc=ev.get("word_accuracy_beam4", "-"), one_pair=ev.get("marker_one_pair_rate", "-"),
        gold_span=ev.get("marker_gold_span_rate", "-"), marked_em=ev.get("marked_exact_match", "-"),
        speed=ev.get("greedy_sentences_per_s", "-"), json=json.dumps(summary, indent=2))
    (out / "MODEL_CARD.md").write_text(text)


def _recipe_args(argv: list[str]) -> list[str]:
    """The command-line arguments minus --out/--work: paths do not change the weights,
    so a model trained into a scratch folder reports the recipe that reproduces it."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--out", "--work"):
            skip = True
        elif not a.startswith(("--out=", "--work=")):
            out.append(a)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--work", type=Path, default=ROOT / "build" / "synth-en-xx-work",
                    help="scratch folder (git-ignored): spm training data, torch checkpoint")
    ap.add_argument("--minutes", type=float, default=19.0, help="hard wall-clock budget of the training loop")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: budget only)")
    ap.add_argument("--pairs", type=int, default=150000)
    ap.add_argument("--marked", type=float, default=0.2, help="share of examples with one entity marked")
    ap.add_argument("--marked-all", type=float, default=0.15, help="share of examples with every entity marked")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 beats 2 when other processes share the 2 cores")
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=512)
    ap.add_argument("--enc-layers", type=int, default=3)
    ap.add_argument("--dec-layers", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--batch-tokens", type=int, default=4000)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--eval", type=int, default=1000, help="held-out pairs to evaluate (0: skip)")
    ap.add_argument("--eval-seed", type=int, default=7)
    args = ap.parse_args(argv)

    import shutil

    import torch

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    t_start = time.monotonic()
    log = lambda msg: print(f"[{time.monotonic() - t_start:7.1f}s] {msg}", flush=True)

    out: Path = args.out
    work: Path = args.work  # SentencePiece data and the torch checkpoint; not shipped
    work.mkdir(parents=True, exist_ok=True)
    examples = make_examples(args.pairs, args.seed, args.marked, marked_all_share=args.marked_all)
    log(f"{len(examples)} training examples ({args.marked:.0%} one entity marked, "
        f"{args.marked_all:.0%} all entities marked)")
    sp = train_spm(examples, work / "spm", args.vocab, args.seed)
    vocab_tokens = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    src_ids = sp.encode([s for s, _ in examples])
    tgt_ids = sp.encode([t for _, t in examples])
    log(f"spm {len(vocab_tokens)} pieces; mean src {np.mean([len(s) for s in src_ids]):.1f} "
        f"tgt {np.mean([len(t) for t in tgt_ids]):.1f} pieces")

    model = build_model(len(vocab_tokens), args.d_model, args.heads, args.ffn, args.enc_layers,
                        args.dec_layers, args.dropout)
    log(f"model parameters: {sum(p.numel() for p in model.parameters()):,}")
    model.train()
    stats = train(model, src_ids, tgt_ids, args, log)
    log(f"trained: {stats}")
    model.eval()
    torch.save({"config": model.config, "state_dict": model.state_dict()}, work / "model.pt")

    # float32 parity check, then the int8 model
    f32 = save_spec(to_spec(model, vocab_tokens, args.heads), work / "f32", None)
    parity = check_parity(model, f32, sp, examples[:16], log)
    shutil.rmtree(f32)
    if parity > 1e-3:
        raise SystemExit(f"CTranslate2 does not reproduce the torch model (max |dlogp| {parity})")
    tmp = save_spec(to_spec(model, vocab_tokens, args.heads), out, "int8")
    shutil.copy(work / "spm.model", tmp / "spm.model")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    size = (out / "model.bin").stat().st_size
    log(f"saved {out} (model.bin {size / 1e6:.2f} MB)")

    report = {"recipe": " ".join(["python", "bench/train_reference_mt.py"] + _recipe_args(argv if argv is not None else sys.argv[1:])),
              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "training": stats, "parameters": sum(p.numel() for p in model.parameters()),
              "model_bin_bytes": size, "torch_ct2_float32_max_abs_logprob_diff": parity,
              "torch": torch.__version__, "ctranslate2": __import__("ctranslate2").__version__}
    if args.eval:
        report["eval"] = evaluate(out, args.eval, args.eval_seed, log, args.threads)
    report["total_seconds"] = round(time.monotonic() - t_start, 1)
    (out / "eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_card(out, report)
    log(f"done in {report['total_seconds']}s")


if __name__ == "__main__":
    main()
