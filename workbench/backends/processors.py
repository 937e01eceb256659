"""Logits processors: what plugs into local generation between the model's logits and the choice
of the next token, one class per concept.

Each is called like a transformers `LogitsProcessor`, `processor(input_ids, scores)`, so the same
object works inside `generate` (in a `LogitsProcessorList`) and in the backend's own batched
greedy loop, and a penalty means the same thing on every path. Torch is imported when a
processor runs, not when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..logprobs import TokenLogprobs
from ..params import GenerationParams

if TYPE_CHECKING:
    import torch


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


def chosen_by(params: GenerationParams) -> tuple[str, ...]:
    """The processors that shape the distribution a token is chosen from, in the order they
    run (transformers' order: its repetition penalty, then ours, then the sampling warpers)."""
    names: list[str] = []
    if params.repetition_penalty != 1.0:
        names.append("repetition_penalty")
    if params.penalised:
        names.append("frequency_presence_penalty")
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
