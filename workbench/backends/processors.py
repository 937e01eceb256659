"""Logits processors: what plugs into local generation between the model's logits and the choice
of the next token, one class per concept.

Each is called like a transformers `LogitsProcessor`, `processor(input_ids, scores)`, so the same
object works inside `generate` (in a `LogitsProcessorList`) and in the backend's own batched
greedy loop, and a penalty means the same thing on every path. Torch is imported when a
processor runs, not when this module is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..logprobs import TokenLogprobs
from ..params import GenerationParams

if TYPE_CHECKING:
    import torch

GRAMMAR = "grammar"  # the grammar mask's name among the processors a distribution comes after


class FrequencyPresencePenalty:
    """OpenAI's frequency and presence penalties over the tokens generated so far.

    logits[t] -= frequency_penalty × count(t) + presence_penalty × (count(t) > 0), where count
    is how often t occurs in this row's answer so far. Prompt tokens do not count (unlike
    transformers' repetition penalty): `prompt_len` columns at the start of `input_ids` are the
    prompt (with any padding) and are skipped. Positive values discourage repeats; negative
    values encourage them.
    """

    def __init__(self, frequency: float, presence: float, prompt_len: int):
        self.frequency, self.presence, self.prompt_len = frequency, presence, prompt_len

    @classmethod
    def for_params(cls, params: GenerationParams, prompt_len: int) -> FrequencyPresencePenalty:
        return cls(params.frequency_penalty, params.presence_penalty, prompt_len)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        generated = input_ids[:, self.prompt_len :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros(scores.shape, dtype=scores.dtype, device=scores.device)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


class RepetitionPenalty:
    """transformers' repetition penalty (CTRL's), without counting padding.

    Every token already in the row — prompt or answer — has its logit divided by the penalty
    (multiplied, when the logit is negative), exactly as transformers'
    `RepetitionPenaltyLogitsProcessor` computes it. The difference: `prompt_mask` marks which
    of the first columns of `input_ids` are the row's own tokens, so the left padding of a
    batch is not part of the row. transformers' processor counts it, and on SmolLM2 the pad
    token is the end-of-sequence token: a padded row was kept from ending, so it could answer
    differently in a batch than alone.
    """

    def __init__(self, penalty: float, prompt_mask: torch.Tensor):
        self.penalty, self.prompt_mask = penalty, prompt_mask

    def select(self, keep: torch.Tensor) -> None:
        """Keep only these rows (rows that finished left the batch)."""
        self.prompt_mask = self.prompt_mask[keep]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        own = torch.ones(input_ids.shape, dtype=scores.dtype, device=scores.device)
        own[:, : self.prompt_mask.shape[1]] = self.prompt_mask.to(scores.dtype)
        seen = torch.zeros_like(scores).scatter_add_(1, input_ids, own) > 0
        penalised = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return torch.where(seen, penalised, scores)


class GrammarMask:
    """Masks, at each step and for each row, every token its grammar does not allow next.

    Each row has its own llguidance matcher (a copy of the constraint's compiled one), which
    computes the allowed tokens as a bitmask, one bit per token id; disallowed logits become
    -inf, so greedy decoding and sampling alike choose only tokens that keep the answer inside
    the language, and the answer can end (EOS is allowed) only where the language can. The
    mask runs after the penalties and before the sampling warpers (vLLM's order): top-p and
    top-k then pick among allowed tokens only.

    Called as a logits processor (`processor(input_ids, scores)`, inside generate) it first
    hands each matcher the token chosen at the step before (the last column of `input_ids`);
    the backend's own greedy loop calls `mask` and `took` instead, and `select` when rows
    leave its batch. Once a row has chosen EOS its later steps (padding, in a batch) are not
    masked: they are cut from its answer anyway. A matcher that has stopped (nothing can
    follow, as after a closed JSON object) allows only the end. Every EOS id of the model
    counts as the end of the answer, whichever the matcher's tokenizer names.
    """

    def __init__(
        self,
        matchers: Sequence[Any],
        vocab_size: int,
        eos_ids: Sequence[int],
        engine_eos: int,
        executor: Any = None,
    ):
        import torch

        self.matchers = list(matchers)
        self.eos_ids, self.engine_eos = sorted(eos_ids), engine_eos
        self.vocab_size, self.executor = vocab_size, executor
        self._bitmask = torch.full(
            (len(self.matchers), (vocab_size + 31) // 32), -1, dtype=torch.int32
        )
        self._started = False
        self.ended = [False] * len(self.matchers)  # the row chose an EOS: its answer is over

    def select(self, keep: torch.Tensor) -> None:
        """Keep only these rows (rows that finished left the batch)."""
        rows = keep.tolist()
        self.matchers = [self.matchers[k] for k in rows]
        self.ended = [self.ended[k] for k in rows]
        self._bitmask = self._bitmask[keep].contiguous()

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._started:
            self.took(input_ids[:, -1].tolist())
        return self.mask(scores)

    def took(self, tokens: Sequence[int]) -> None:
        """Advance each row's matcher by the token chosen for it at the step last masked."""
        for i, token in enumerate(tokens):
            if self.ended[i]:
                continue
            matcher = self.matchers[i]
            if token in self.eos_ids:
                self.ended[i] = True
                token = self.engine_eos
            if not matcher.is_stopped():
                matcher.consume_token(int(token))

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        import numpy as np
        import torch

        self._started = True
        bitmask = self._bitmask
        live = [(m, i) for i, m in enumerate(self.matchers) if not self.ended[i]]
        if not live:
            return scores
        bitmask.fill_(0)
        row_bytes = bitmask.shape[1] * 4
        # A stopped matcher (nothing can follow: the JSON is closed) allows only the end.
        masked = [(m, i) for m, i in live if not (m.is_stopped() or m.is_error())]
        if self.executor is not None and len(masked) > 1:
            self.executor.unsafe_compute_mask_ptr(
                masked, bitmask.data_ptr(), row_bytes, len(bitmask)
            )
        else:
            for matcher, i in masked:
                matcher.unsafe_compute_mask_ptr(bitmask[i].data_ptr(), row_bytes)
        # One bit per token id, little-endian words: numpy unpacks them in C (shifting in
        # torch cost more than the mask's own computation).
        bits = np.unpackbits(bitmask.numpy().view(np.uint8), axis=1, bitorder="little")
        allowed = torch.from_numpy(bits[:, : scores.shape[-1]].view(np.bool_))
        if scores.shape[-1] > allowed.shape[1]:  # ids past the grammar's vocabulary: never
            pad = allowed.new_zeros((len(bitmask), scores.shape[-1] - allowed.shape[1]))
            allowed = torch.cat([allowed, pad], dim=1)
        for matcher, i in live:
            if matcher.is_stopped() or matcher.is_error():
                allowed[i, self.engine_eos] = True
        ends = allowed[:, self.engine_eos].clone()
        if self.engine_eos not in self.eos_ids:  # not an end for this model: its EOS ids are
            allowed[:, self.engine_eos] = False
        for eos in self.eos_ids:
            if eos < allowed.shape[1]:
                allowed[:, eos] |= ends
        for i, done in enumerate(self.ended):
            if done:  # the row has ended: its padding is not masked
                allowed[i] = True
        # torch.where, not masked_fill: about five times faster on a mostly-masked vocabulary.
        return torch.where(allowed, scores, float("-inf"))


def chosen_by(params: GenerationParams) -> tuple[str, ...]:
    """The processors that shape the distribution a token is chosen from, in the order they
    run (transformers' order: its repetition penalty, then ours, then the grammar's mask,
    then the sampling warpers). A distribution after `grammar` is after the mask."""
    names: list[str] = []
    if params.repetition_penalty != 1.0:
        names.append("repetition_penalty")
    if params.penalised:
        names.append("frequency_presence_penalty")
    if params.constraint is not None:
        names.append(GRAMMAR)
    if params.sampling:
        if params.temperature != 1.0:
            names.append("temperature")
        if params.top_k:
            names.append("top_k")
        if params.top_p < 1.0:
            names.append("top_p")
    return tuple(names)


class LogprobRecorder:
    """Records each step's log-probabilities: the chosen token's and the k best.

    `observe(scores)` takes the final scores of a step — the logits after every processor, the
    very tensor the token is chosen from — and `took(tokens, rows)` the tokens chosen from them,
    for which batch rows. As a logits processor (`__call__`) it must come last in the list, so
    that what it sees is what the sampler sees; it returns the scores unchanged. Only one step's
    log-softmax is held at a time, so memory does not grow with the vocabulary × answer length.
    """

    def __init__(self, rows: int, k: int, processors: tuple[str, ...]):
        self.k, self.processors = k, processors
        self.tokens: list[list[int]] = [[] for _ in range(rows)]
        self.logprobs: list[list[float]] = [[] for _ in range(rows)]
        self.top_ids: list[list[tuple[int, ...]]] = [[] for _ in range(rows)]
        self.top_logprobs: list[list[tuple[float, ...]]] = [[] for _ in range(rows)]
        self._step: torch.Tensor | None = None

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self.observe(scores)
        return scores

    def observe(self, scores: torch.Tensor) -> None:
        self._step = scores.float().log_softmax(-1)

    def took(self, tokens: torch.Tensor, rows: list[int] | None = None) -> None:
        """Record the tokens chosen at the step last observed; `rows[i]` is batch position
        i's row (default: position i is row i)."""
        step = self._step
        assert step is not None, "took() before observe()"
        self._step = None
        chosen = step.gather(1, tokens[:, None].to(step.device))[:, 0].tolist()
        values, ids = step.topk(min(self.k, step.shape[-1]), dim=-1)
        values_l, ids_l, tokens_l = values.tolist(), ids.tolist(), tokens.tolist()
        for i, row in enumerate(rows if rows is not None else range(len(tokens_l))):
            self.tokens[row].append(int(tokens_l[i]))
            self.logprobs[row].append(float(chosen[i]))
            self.top_ids[row].append(tuple(ids_l[i]))
            self.top_logprobs[row].append(tuple(values_l[i]))

    def result(self, row: int, steps: int) -> TokenLogprobs:
        """Row `row`'s first `steps` steps (the tokens its answer counts)."""
        return TokenLogprobs(
            tuple(self.tokens[row][:steps]),
            tuple(self.logprobs[row][:steps]),
            tuple(self.top_ids[row][:steps]),
            tuple(self.top_logprobs[row][:steps]),
            self.k,
            "processors",
            self.processors,
        )
