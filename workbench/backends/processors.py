"""Logits processors: what plugs into local generation between the model's logits and the choice
of the next token, one class per concept.

Each is called like a transformers `LogitsProcessor`, `processor(input_ids, scores)`, so the same
object works inside `generate` (in a `LogitsProcessorList`) and in the backend's own batched
greedy loop, and a penalty means the same thing on every path. Torch is imported when a
processor runs, not when this module is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
