"""The in-process LLM backend: a CTranslate2 ``Generator`` (decoder-only model) behind
the same async ``complete(messages, ...) -> Completion`` interface as the HTTP client in
``xlcorpus.transforms.backends.llm_client``; no constrained decoding, so answers rely on
prompting plus the annotation stage's robust parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from xlcorpus.transforms.backends.llm_client import ClientStats, Completion, LLMError


@dataclass(frozen=True)
class CT2Settings:
    model: str  # a CTranslate2 model directory (ct2-transformers-converter output of a decoder-only model)
    tokenizer: str | None = None  # a SentencePiece .model; None: whitespace-separated tokens
    device: str = "cpu"
    compute_type: str = "default"
    intra_threads: int = 0
    bos_token: str | None = "<s>"
    eos_token: str | None = "</s>"
    # how chat messages become one prompt: each message through ``message_format``,
    # then ``assistant_prefix`` where the model's answer begins
    message_format: str = "<|{role}|>\n{content}\n"
    assistant_prefix: str = "<|assistant|>\n"
    max_batch_size: int = 32
    model_id: str | None = None  # cache identity; default: from the model's files


def _model_identity(model_dir: str) -> str:
    """Cheap content identity: config + vocabulary bytes and the weights' size (hashing
    gigabytes of weights on every worker start would cost more than it saves)."""
    import hashlib

    h = hashlib.sha256()
    d = Path(model_dir)
    for name in ("config.json", "vocabulary.json", "vocabulary.txt", "vocabulary"):
        if (d / name).is_file():
            h.update(name.encode() + (d / name).read_bytes())
    weights = d / "model.bin"
    if weights.is_file():
        h.update(str(weights.stat().st_size).encode())
    return f"ctranslate2:{d.name}:{h.hexdigest()[:16]}"


class CTranslate2Backend:
    """A ``ctranslate2.Generator`` behind the same async interface. Requests that
    arrive in the same loop tick (a batch's rows) are generated in one
    ``generate_batch`` call, on one worker thread so the loop stays free."""

    kind = "ctranslate2"
    supports_json_schema = False  # no constrained decoding: plain prompting + robust parsing

    def __init__(self, settings: CT2Settings, generator=None):
        import ctranslate2

        self.settings = settings
        self.stats = ClientStats()
        self.generator = generator or ctranslate2.Generator(
            settings.model, device=settings.device, compute_type=settings.compute_type,
            intra_threads=settings.intra_threads)
        self._sp = None
        if settings.tokenizer:
            import sentencepiece as spm

            self._sp = spm.SentencePieceProcessor(model_file=settings.tokenizer)
        self.model_id = settings.model_id or _model_identity(settings.model)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ct2")
        self._pending: list = []
        self._flush_scheduled = False

    def prompt(self, messages: Sequence[dict]) -> str:
        s = self.settings
        return "".join(s.message_format.format(role=m["role"], content=m["content"]) for m in messages) \
            + s.assistant_prefix

    def encode(self, text: str) -> list[str]:
        tokens = self._sp.encode(text, out_type=str) if self._sp else text.split()
        return ([self.settings.bos_token] if self.settings.bos_token else []) + tokens

    def decode(self, ids: list[int], tokens: list[str]) -> str:
        return self._sp.decode(ids) if self._sp else " ".join(tokens)

    async def complete(self, messages: list[dict], *, temperature: float = 0.0, max_tokens: int = 512,
                       seed: int | None = None, json_schema: dict | None = None,
                       schema_name: str = "answer") -> Completion:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((self.encode(self.prompt(messages)), (temperature, max_tokens, seed), fut))
        if not self._flush_scheduled:
            # call_soon runs after every task already scheduled has reached its first
            # await: a batch's first requests all land in one generate_batch
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._flush_scheduled = False
        groups: dict[tuple, list] = {}
        for item in self._pending:
            groups.setdefault(item[1], []).append(item)
        self._pending = []
        loop = asyncio.get_running_loop()
        for params, items in groups.items():
            loop.create_task(self._generate(params, items))

    async def _generate(self, params: tuple, items: list) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, self._generate_sync, params, [t for t, _, _ in items])
        except Exception as e:  # noqa: BLE001 - a model error fails these requests, not the loop
            for _, _, fut in items:
                if not fut.done():
                    fut.set_exception(LLMError(f"ctranslate2 generation failed: {type(e).__name__}: {e}"))
            return
        for (tokens, _, fut), (text, raw, n_out) in zip(items, results):
            self.stats.prompt_tokens += len(tokens)
            self.stats.completion_tokens += n_out
            if not fut.done():
                fut.set_result(Completion(text, raw, len(tokens), n_out))

    def _generate_sync(self, params: tuple, prompts: list[list[str]]) -> list[tuple[str, str, int]]:
        import ctranslate2

        temperature, max_tokens, seed = params
        if seed is not None:
            ctranslate2.set_random_seed(seed)  # process-global: safe, generation runs on one thread
        sampling = {"sampling_topk": 1} if temperature <= 0 else {"sampling_topk": 0,
                                                                    "sampling_temperature": temperature}
        self.stats.requests += len(prompts)
        out = self.generator.generate_batch(
            prompts, max_length=max_tokens, include_prompt_in_result=False,
            max_batch_size=self.settings.max_batch_size, end_token=self.settings.eos_token, **sampling)
        results = []
        for r in out:
            tokens, ids = r.sequences[0], r.sequences_ids[0]
            results.append((self.decode(ids, tokens), json.dumps(tokens, ensure_ascii=False), len(ids)))
        return results

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False)
