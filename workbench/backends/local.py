"""The local backend: a transformers model on this machine's CPU.

The backend is loaded once per process per (model, dtype) and reused.

Batches are built for CPU throughput without changing any output: rows are sorted by length and
left-padded, and the token prefix every row shares (system message, instructions, examples) is
encoded once; its KV cache is copied into each batch, laid out as [prefix][pads][suffix] with an
explicit attention mask, so generate computes only each row's own suffix. Sampled rows run one
at a time under their own seed, so a sampled output does not depend on its batch either.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import gc
import json
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..choices import ChoicesError, continuation
from ..constraints import Constraint, ConstraintError
from ..logprobs import DEFAULT_TOP_K
from ..params import GenerationParams
from ..templates import Rendered
from .base import (
    Cancel,
    Capabilities,
    ChoiceScores,
    FinishReason,
    Generation,
    LogLikelihood,
    ModelError,
    ModelInfo,
    ModelInput,
    Truncation,
    check_context,
    first_stop,
)
from .chat_template import (
    TemplateChecks,
    agrees_with_tokenizer,
    read_chat_template,
    template_hash,
)
from .model_files import ResolvedModel, resolve_model
from .processors import (
    FrequencyPresencePenalty,
    GrammarMask,
    LogprobRecorder,
    RepetitionPenalty,
    chosen_by,
)

if TYPE_CHECKING:
    import torch

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16"}
MIN_SHARED_PREFIX = 8  # tokens; below this a shared prefix is not worth a separate pass
BATCH_TOKEN_BUDGET = 32 * 160  # rows × (longest suffix + new tokens) per batch
MAX_BATCH = 32
COMPILED_CONSTRAINTS = 64  # compiled grammars kept per backend (one per distinct constraint)


# --- loading ------------------------------------------------------------------------------------

_loaded: dict[tuple[str, str, bool], TransformersBackend] = {}
_load_lock = threading.Lock()
CHECKS_FOLDER = "chat-template-checks"  # under storage/models: see chat_template.TemplateChecks


def load_backend(
    spec: str,
    storage_dir: Path,
    *,
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> TransformersBackend:
    """The process-wide backend for a model: made on first use, then reused.

    Making it reads the model folder's files only; the tokenizer and the weights (and torch)
    load the first time something needs them, so an answer found in the store costs none of it.
    """
    if dtype not in DTYPES:
        raise ModelError(f"dtype {dtype!r} is not supported: use float32 or bfloat16")
    dtype = DTYPES[dtype]
    resolved = resolve_model(spec, storage_dir)
    key = (str(resolved.path), dtype, trust_remote_code)
    with _load_lock:
        backend = _loaded.get(key)
        if backend is None:
            checks = TemplateChecks(storage_dir / "models" / CHECKS_FOLDER)
            backend = _loaded[key] = TransformersBackend(
                resolved, dtype, trust_remote_code, checks=checks
            )
        return backend


@contextlib.contextmanager
def _loading() -> Generator[None, None, None]:
    """Import and load with the cyclic garbage collector paused, then freeze what is there.

    Importing torch and transformers and loading a model create about 600,000 objects that live
    as long as the process. While they pile up the collector keeps walking them (about 0.4 s
    of a first answer); left to it afterwards, it walks them again as they age (0.2 s of the
    first answer) and several times more while the interpreter tears its modules down at exit
    (about 1 s). `gc.freeze()` moves everything alive into a generation it never walks. The
    price: cyclic garbage alive at that moment (about 8 MB of the imports' own) is not reclaimed.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def configure_threads() -> None:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(max(1, cores or 1))


class TransformersBackend:
    """A transformers model folder; its tokenizer and weights load on first use.

    What a cache lookup needs — the ModelInfo and, for chat prompts, the chat template applied
    to the messages — comes from the folder's files (config.json, the chat template), with the
    same values the loaded tokenizer and model give: `model_input` renders the template itself
    once this model's tokenizer has been seen to render it the same way (see chat_template).
    """

    # The tokenizer and the logits are here: exact token counts and cuts, text scoring, every
    # generated token's log-probability with its top alternatives (`Generation.logprobs`), and
    # decoding under a grammar (`params.constraint`, see GrammarMask).
    capabilities = Capabilities(
        token_ids=True, logits=True, logprobs=True, choices=True, constrained=True
    )
    top_k_logprobs = DEFAULT_TOP_K  # alternatives recorded per generated token

    def __init__(
        self,
        resolved: ResolvedModel,
        dtype: str,
        trust_remote_code: bool = False,
        *,
        checks: TemplateChecks | None = None,
    ):
        path = resolved.path
        config = _read_config(resolved)
        if config.get("auto_map") and not trust_remote_code:
            raise ModelError(
                f"{resolved.name} ships custom model code (auto_map in config.json); loading it "
                "needs trust_remote_code, which is off because that code would run on this "
                "machine. Turn it on only for models whose code you trust."
            )
        has_tokenizer = any(
            (path / f).exists()
            for f in ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")
        )
        if not has_tokenizer:
            raise ModelError(
                f"{path} has no tokenizer (tokenizer.json, tokenizer.model or vocab.json); "
                "save the tokenizer into the model folder"
            )
        self._resolved, self._dtype, self._trust_remote_code = resolved, dtype, trust_remote_code
        self._load_lock = threading.RLock()
        self._tokenizer: Any = None
        self._model: Any = None
        self._eos_ids: set[int] = set()
        self._pad_id = 0
        self._checks = checks
        # The chat template as read from the files, and whether it renders here (see model_input).
        self._template = read_chat_template(path)
        key = (
            checks.key(path, resolved.revision, self._template)
            if checks is not None and self._template is not None
            else None
        )
        self._template_key = key
        self._render_here = key is not None and checks is not None and checks.known(key)
        if self._render_here:
            assert self._template is not None
            template_hash_ = self._template.hash
        else:  # only the tokenizer can say which template it uses (loading it checks ours)
            loaded = self.tokenizer.chat_template or ""
            if isinstance(loaded, dict):  # named templates (additional_chat_templates/)
                loaded = json.dumps(loaded, sort_keys=True, ensure_ascii=False)
            template_hash_ = template_hash(loaded)
        window = config.get("max_position_embeddings")
        if not (isinstance(window, int) and not isinstance(window, bool) and window > 0):
            window = _config_window(self._auto_config())
        self.info = ModelInfo(
            name=resolved.name,
            path=str(path),
            revision=resolved.revision,
            dtype=dtype,
            context_window=int(window),
            chat_template_hash=template_hash_,
        )
        self._prefix_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self._grammar_tokenizer: Any = None
        self._compiled: dict[Constraint, Any] = {}

    # --- what loads on first use ----------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        """transformers' tokenizer, loaded on first use (this imports transformers and torch)."""
        if self._tokenizer is None:
            with self._load_lock:
                if self._tokenizer is None:
                    with _loading():
                        self._tokenizer = self._load_tokenizer()
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The weights, loaded on first use."""
        if self._model is None:
            with self._load_lock:
                if self._model is None:
                    with _loading():
                        self._model = self._load_model()
        return self._model

    @property
    def eos_ids(self) -> set[int]:
        self.model  # noqa: B018 - loading the model sets them
        return self._eos_ids

    @property
    def pad_id(self) -> int:
        self.model  # noqa: B018 - loading the model sets it
        return self._pad_id

    @property
    def loaded(self) -> bool:
        """Whether the weights are in memory."""
        return self._model is not None

    def _load_tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        resolved = self._resolved
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                resolved.path, local_files_only=True, trust_remote_code=self._trust_remote_code
            )
        except (OSError, ValueError) as exc:
            raise ModelError(f"{resolved.name}: could not load: {exc}") from None
        template, key, checks = self._template, self._template_key, self._checks
        if template is not None and agrees_with_tokenizer(template, tokenizer):
            self._render_here = True
            if key is not None and checks is not None and not checks.known(key):
                checks.record(key, resolved.path, resolved.revision)
        else:
            self._render_here = False
        return tokenizer

    def _auto_config(self) -> Any:
        from transformers import AutoConfig

        resolved = self._resolved
        try:
            return AutoConfig.from_pretrained(
                resolved.path, local_files_only=True, trust_remote_code=False
            )
        except ValueError as exc:
            if "trust_remote_code" in str(exc) and not self._trust_remote_code:
                raise ModelError(
                    f"{resolved.name} needs its own Python code to load (trust_remote_code); it "
                    "is off because that code would run on this machine. Turn it on only for "
                    "models whose code you trust."
                ) from None
            raise ModelError(f"{resolved.name}: cannot read its config: {exc}") from None

    def _load_model(self) -> Any:
        import torch
        from transformers import AutoModelForCausalLM

        resolved = self._resolved
        config = self._auto_config()  # its own checks, with their messages, before the weights
        tokenizer = self.tokenizer
        configure_threads()
        try:
            model = AutoModelForCausalLM.from_pretrained(
                resolved.path,
                config=config,
                local_files_only=True,
                trust_remote_code=self._trust_remote_code,
                dtype=getattr(torch, self._dtype),
            ).eval()  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as exc:
            raise ModelError(f"{resolved.name}: could not load: {exc}") from None
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        pad = tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else (min(self._eos_ids) if self._eos_ids else 0)
        window = _config_window(model.config)
        if window != self.info.context_window:  # config.json said otherwise than the config
            self.info = dataclasses.replace(self.info, context_window=window)
        return model

    # --- inputs -------------------------------------------------------------------------------
    def model_input(self, rendered: Rendered) -> ModelInput:
        """Exactly what the model reads. A chat prompt goes through the model's chat template:
        rendered here without the tokenizer once it has been seen to agree with the tokenizer's
        rendering (the same text, see chat_template), else by the tokenizer."""
        if rendered.mode == "completion":
            return ModelInput(rendered.text, add_special_tokens=True)
        if not self._render_here:
            return self.tokenizer_model_input(rendered)
        assert self._template is not None
        if not self._template.source:
            raise self._no_chat_template()
        messages = [m.as_dict() for m in rendered.messages]
        prefill = bool(messages) and messages[-1]["role"] == "assistant"
        text = self._template.render(messages, prefill=prefill)
        return ModelInput(text, add_special_tokens=False)

    def tokenizer_model_input(self, rendered: Rendered) -> ModelInput:
        """`model_input` as the tokenizer computes it (`apply_chat_template`); loads it."""
        if rendered.mode == "completion":
            return ModelInput(rendered.text, add_special_tokens=True)
        if not self.tokenizer.chat_template:
            raise self._no_chat_template()
        messages = [m.as_dict() for m in rendered.messages]
        prefill = bool(messages) and messages[-1]["role"] == "assistant"
        text = self.tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
        )
        return ModelInput(str(text), add_special_tokens=False)

    def _no_chat_template(self) -> ModelError:
        return ModelError(
            f"{self.info.name} has no chat template, so it cannot run chat prompts; set the "
            "prompt's model.apiType to completion"
        )

    def encode(self, model_input: ModelInput) -> list[int]:
        ids = self.tokenizer(model_input.text, add_special_tokens=model_input.add_special_tokens)
        return list(ids["input_ids"])

    def count_tokens(self, model_input: ModelInput) -> int:
        return len(self.encode(model_input))

    def count_is_estimate(self, model_input: ModelInput) -> bool:
        return False

    def check_fits(self, prompt_tokens: int, params: GenerationParams) -> None:
        check_context(self.info, prompt_tokens, params)

    def truncate_to_tokens(self, text: str, tokens: int) -> Truncation:
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) <= tokens:
            return Truncation(text, exact=True)
        return Truncation(str(self.tokenizer.decode(ids[: max(tokens, 0)])), exact=True)

    # --- constraints ----------------------------------------------------------------------------
    def check_constraint(self, constraint: Constraint) -> None:
        """Refuse a constraint no answer can follow with this tokenizer (ConstraintError): one
        that allows no first token, or only the end (an empty answer). Loads the tokenizer,
        not the weights, so a run is refused before the model loads."""
        self._compile(constraint)

    def _compile(self, constraint: Constraint) -> Any:
        """The constraint's llguidance matcher at the start of an answer, compiled once."""
        found = self._compiled.get(constraint)
        if found is not None:
            return found
        from llguidance import LLMatcher

        constraint.check()
        matcher = LLMatcher(self._llg_tokenizer(), constraint.grammar(), log_level=0)
        if matcher.is_error():
            raise ConstraintError(f"{constraint.source}: {_one_line(matcher.get_error())}")
        first = _allowed_ids(matcher.compute_bitmask())
        eos = self._llg_tokenizer().eos_token
        if not first:
            raise ConstraintError(
                f"{constraint.source}: no answer can satisfy it (not one token of "
                f"{self.info.name}'s vocabulary can begin it)"
            )
        if first == [eos]:
            raise ConstraintError(
                f"{constraint.source}: no answer but an empty one satisfies it"
                + (" (choices that tokenise to nothing)" if constraint.kind == "choices" else "")
            )
        if len(self._compiled) >= COMPILED_CONSTRAINTS:
            self._compiled.pop(next(iter(self._compiled)))
        self._compiled[constraint] = matcher
        return matcher

    def _llg_tokenizer(self) -> Any:
        """The tokenizer as llguidance reads it (about a second to build, so built once)."""
        if self._grammar_tokenizer is None:
            import llguidance.hf

            tokenizer = self.tokenizer
            eos = tokenizer.eos_token_id
            vocab = _read_config(self._resolved).get("vocab_size")
            try:
                self._grammar_tokenizer = llguidance.hf.from_tokenizer(
                    tokenizer,
                    n_vocab=vocab if isinstance(vocab, int) and vocab >= len(tokenizer) else None,
                    eos_token=eos,
                )
            except ValueError as exc:
                raise ModelError(
                    f"{self.info.name}: constrained decoding needs a fast tokenizer "
                    f"(tokenizer.json): {exc}"
                ) from None
        return self._grammar_tokenizer

    def _grammar_mask(self, params: GenerationParams, rows: int) -> GrammarMask | None:
        """A fresh mask for `rows` answers under `params.constraint` (None without one)."""
        if params.constraint is None:
            return None
        start = self._compile(params.constraint)
        return GrammarMask(
            [start.deep_copy() for _ in range(rows)],
            int(self.model.config.vocab_size),
            sorted(self.eos_ids),
            int(self._llg_tokenizer().eos_token),
            executor=_executor() if rows > 1 else None,
        )

    # --- scoring --------------------------------------------------------------------------------
    def token_pieces(self, ids: Sequence[int], *, in_sequence: bool = True) -> list[str]:
        tokenizer = self.tokenizer
        if not in_sequence:
            return [tokenizer.decode([i]) for i in ids]
        whole = tokenizer.decode(list(ids))
        pieces = _pieces_in_windows(tokenizer.decode, ids)
        if "".join(pieces) != whole:  # a tokenizer that rewrites across windows: decode it all
            pieces = _pieces_from_prefixes(tokenizer.decode, ids)
        return pieces

    def token_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate_forced(
        self,
        model_input: ModelInput,
        forced: Sequence[int],
        params: GenerationParams,
        *,
        seed: int,
        cancel: Cancel | None = None,
    ) -> Generation:
        """The forced tokens, then the model's continuation (see the Backend protocol).

        One forward pass over the prompt and the forced tokens (but the last) scores every
        forced token: each position's logits go through the same processors generation uses
        (penalties, then the sampling warpers), in the same order and with the same history,
        so a forced token that the model chose before gets the log-probability it was stored
        with. That pass's cache is then handed to generate, which computes only the last forced
        token before continuing: the prompt is not computed twice. A sampled continuation
        draws under `seed` from its first new token (not from where the parent's draws were).
        """
        import torch
        from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

        params.validate(self.info.context_window)
        forced = [int(t) for t in forced]
        vocabulary = int(self.model.config.vocab_size)
        for token in forced:
            if not 0 <= token < vocabulary:
                raise ValueError(
                    f"token id {token} is outside {self.info.name}'s vocabulary "
                    f"(0–{vocabulary - 1})"
                )
        if not forced:
            raise ValueError("nothing to force: give at least one token")
        if len(forced) > params.max_new_tokens:
            raise ValueError(
                f"{len(forced)} forced tokens are more than max_new_tokens {params.max_new_tokens}"
            )
        prompt = self.encode(model_input)
        self.check_fits(len(prompt), params)
        every = [*prompt, *forced]
        processors = chosen_by(params)
        scored = LogprobRecorder(1, self.top_k_logprobs, processors)
        recorder = LogprobRecorder(1, self.top_k_logprobs, processors)
        grammar = self._grammar_mask(params, 1)
        if grammar is not None:
            start = self._compile(params.constraint)  # type: ignore[arg-type]
            if start.deep_copy().validate_tokens(forced) < len(forced):
                raise ValueError(
                    f"the forced tokens leave the answer's constraint "
                    f"({params.constraint.label}): an answer under it cannot begin so"  # type: ignore[union-attr]
                )
        kwargs = self._generate_kwargs(
            params, [cancel] if cancel else [], len(prompt), recorder, grammar
        )
        steps: list[Any] = list(kwargs["logits_processor"])[:-1]  # ours, without the recorder
        if params.repetition_penalty != 1.0:  # generate's own, which runs before ours
            steps.insert(0, RepetitionPenaltyLogitsProcessor(params.repetition_penalty))
        started = time.perf_counter()
        generated: list[int] = []
        with self._generate_lock, torch.inference_mode():
            cache = self._batch_cache(None, 1)
            scoring = self.model(
                input_ids=torch.tensor([every[:-1]]),
                cache=cache,
                use_cache=True,
                logits_to_keep=len(forced),
            )
            logits = scoring.logits[0]
            if cache is None:  # a model with its own kind of cache: the one the pass made
                cache = scoring.cache
            for i, token in enumerate(forced):
                scores = logits[i : i + 1].float()
                history = torch.tensor([every[: len(prompt) + i]])
                for step in steps:
                    scores = step(history, scores)
                scored.observe(scores)
                scored.took(torch.tensor([token]))
            room = params.max_new_tokens - len(forced)
            if room > 0 and forced[-1] not in self.eos_ids:
                kwargs["max_new_tokens"] = room
                kwargs["cache"] = cache
                if params.sampling:
                    torch.manual_seed(seed)
                ids = torch.tensor([every])
                out = self.model.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs
                )
                generated = out[0, len(every) :].tolist()
        latency = time.perf_counter() - started
        cancelled = cancel is not None and cancel.is_set()
        result = self._finish(
            [*forced, *generated], len(prompt), params, latency, None, 1, cancelled
        )
        head, tail = scored.result(0, len(forced)), recorder.result(0, len(generated))
        logprobs = dataclasses.replace(
            head,
            tokens=head.tokens + tail.tokens,
            logprobs=head.logprobs + tail.logprobs,
            top_ids=head.top_ids + tail.top_ids,
            top_logprobs=head.top_logprobs + tail.top_logprobs,
        ).head(result.completion_tokens)
        return dataclasses.replace(result, logprobs=logprobs)

    def log_likelihood(self, text: str) -> LogLikelihood:
        """`text`'s tokens scored after one start token (`start_token`), without the prompt,
        truncated to the context window: how fluent the text reads to this model on its own."""
        import torch

        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError("the output is empty")
        start = start_token(self.tokenizer)
        if start is not None:
            ids = [start, *ids]
        if len(ids) < 2:
            raise ValueError("the output is a single token; it needs at least two to be scored")
        tensor = torch.tensor([ids[: self.info.context_window]])
        with self._generate_lock, torch.inference_mode():
            logits = self.model(input_ids=tensor).logits[0, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits, tensor[0, 1:], reduction="sum")
        return LogLikelihood(-float(nll), tensor.shape[1] - 1)

    # --- answer choices -------------------------------------------------------------------------
    def choice_tokens(self, model_input: ModelInput, choices: Sequence[str]) -> list[list[int]]:
        """Each choice's tokens as the model reads them after this input.

        A choice is scored on the tokens of prompt + choice that come after the prompt's own
        tokens, so the tokenizer's merges at the boundary are the ones it makes in real text
        (see `choices.continuation` for the leading space). When the prompt's tokens are not a
        prefix of that (the choice merged with the prompt's last token), the choice's own
        tokens are appended instead. A choice with no tokens is refused."""
        prompt = self.encode(model_input)
        out: list[list[int]] = []
        for choice in choices:
            text = continuation(model_input.text, choice)
            full = self.encode(ModelInput(model_input.text + text, model_input.add_special_tokens))
            if full[: len(prompt)] == prompt:
                ids = full[len(prompt) :]
            else:
                ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if not ids:
                raise ChoicesError(f"choice {choice!r} tokenises to nothing for {self.info.name}")
            out.append(ids)
        return out

    def score_choices(
        self,
        inputs: Sequence[ModelInput],
        choices: Sequence[str],
        *,
        batch_size: int | None = None,
        on_batch: Callable[[list[tuple[int, ChoiceScores]]], None] | None = None,
        cancel: Cancel | None = None,
    ) -> list[ChoiceScores | None]:
        """Score every choice after every input, batched as generation is.

        Each prompt is read once: rows are length-sorted and left-padded on the shared prefix's
        KV cache (as `generate` does), one forward pass gives every row's cache and the
        distribution of the first answer token, which scores single-token choices outright;
        the other choices' remaining tokens then run as one batch, each on a copy of its
        row's cache. Every token is
        checked (`choice_tokens`, the context window) before the first forward pass."""
        prompts = [self.encode(x) for x in inputs]
        conts = [self.choice_tokens(x, choices) for x in inputs]
        for row, cont in zip(prompts, conts, strict=True):
            longest = max(len(c) for c in cont)
            if len(row) + longest > self.info.context_window:
                raise ChoicesError(
                    f"the prompt is {len(row)} tokens and the longest choice {longest}: more "
                    f"than {self.info.name}'s context window of {self.info.context_window}"
                )
        results: list[ChoiceScores | None] = [None] * len(prompts)
        if not prompts:
            return results
        prefix, order = _reused_prefix_and_order(prompts)
        longest = max(len(c) for cont in conts for c in cont)
        # Each row becomes one row per choice after the prompt: budget the batch for that.
        width = longest * len(choices)
        batches = _batches(order, prompts, len(prefix), width, batch_size)
        prefix_cache = self._prefix_cache(prefix) if prefix else None
        for batch in batches:
            if cancel is not None and cancel.is_set():
                break
            started = time.perf_counter()
            scores = self._score_batch(
                [prompts[i] for i in batch], [conts[i] for i in batch], prefix, prefix_cache
            )
            latency = time.perf_counter() - started
            done: list[tuple[int, ChoiceScores]] = []
            for r, logprobs in enumerate(scores):
                i = batch[r]
                score = ChoiceScores(
                    tuple(logprobs),
                    tuple(len(c) for c in conts[i]),
                    len(prompts[i]),
                    latency,
                    len(batch),
                )
                results[i] = score
                done.append((i, score))
            if on_batch is not None:
                on_batch(done)
        return results

    def _score_batch(
        self,
        rows: list[list[int]],
        conts: list[list[list[int]]],
        prefix: list[int],
        prefix_cache: Any,
    ) -> list[list[float]]:
        """Summed log-probabilities of each row's choices (`conts[row][choice]` token ids)."""
        import torch

        p = len(prefix)
        suffixes = [row[p:] for row in rows]
        width = max(len(s) for s in suffixes)
        n, c = len(rows), len(conts[0])
        input_ids = torch.full((n, p + width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, p + width), dtype=torch.long)
        for r, suffix in enumerate(suffixes):
            if p:
                input_ids[r, :p] = torch.tensor(prefix)
                mask[r, :p] = 1
            input_ids[r, p + width - len(suffix) :] = torch.tensor(suffix)
            mask[r, p + width - len(suffix) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = self._batch_cache(prefix_cache, n)
        more = max(len(t) for cont in conts for t in cont) - 1  # tokens after the first
        with self._generate_lock, torch.inference_mode():
            out = self.model(
                input_ids=input_ids[:, p:],
                attention_mask=mask,
                position_ids=positions[:, p:],
                cache=cache,
                use_cache=more > 0,
                logits_to_keep=1,
            )
            first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)
            scores = [[float(first[r, conts[r][k][0]]) for k in range(c)] for r in range(n)]
            if more == 0:
                return scores
            # Each choice with tokens after its first becomes one row on its prompt's cache
            # (single-token choices are already scored): pair i reads row rows_of[i].
            pairs = [(r, k) for r in range(n) for k in range(c) if len(conts[r][k]) > 1]
            rows_of = torch.tensor([r for r, _ in pairs])
            cache = _select_cache(out.cache, rows_of, self.model.config)
            step = torch.full((len(pairs), more), self.pad_id, dtype=torch.long)
            for i, (r, k) in enumerate(pairs):
                rest = conts[r][k][:-1]
                step[i, : len(rest)] = torch.tensor(rest)
            step_mask = torch.cat([mask[rows_of], mask.new_ones((len(pairs), more))], dim=1)
            step_pos = positions[rows_of, -1][:, None] + 1 + torch.arange(more)[None, :]
            logits = self.model(
                input_ids=step,
                attention_mask=step_mask,
                position_ids=step_pos,
                cache=cache,
                use_cache=False,
            ).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for i, (r, k) in enumerate(pairs):
                tokens = conts[r][k]
                for j in range(1, len(tokens)):
                    scores[r][k] += float(logp[i, j - 1, tokens[j]])
        return scores

    # --- batch generation -----------------------------------------------------------------------
    def generate(
        self,
        inputs: Sequence[ModelInput],
        params: GenerationParams,
        *,
        seeds: Sequence[int] | None = None,
        batch_size: int | None = None,
        on_batch: Callable[[list[tuple[int, Generation]]], None] | None = None,
        cancel: Cancel | None = None,
        rows_as_they_finish: bool = False,
    ) -> list[Generation | None]:
        """Generate for every input; results come back in input order (None if cancelled first).

        `on_batch([(index, generation), …])` is called as each batch finishes, so callers can
        store its rows at once (in one transaction). With `rows_as_they_finish`, a greedy row
        that ends before its batch (EOS or a stop string) is reported on its own the moment it
        ends — a screen watching a long batch then fills row by row — at the cost of one call
        (one transaction) per such row. Greedy rows share batches; sampled rows run one by one
        with their own seed.
        """
        params.validate(self.info.context_window)
        ids = [self.encode(x) for x in inputs]
        for row in ids:
            self.check_fits(len(row), params)
        results: list[Generation | None] = [None] * len(ids)
        if not ids:
            return results
        prefix, order = _reused_prefix_and_order(ids)
        if params.sampling:
            batches = [[i] for i in range(len(ids))]
        else:
            batches = _batches(order, ids, len(prefix), params.max_new_tokens, batch_size)
        prefix_cache = self._prefix_cache(prefix) if prefix else None
        for batch in batches:
            if cancel is not None and cancel.is_set():
                break
            seed = seeds[batch[0]] if seeds is not None else params.seed
            early: dict[int, Generation] = {}

            def report_early(
                r: int,
                g: Generation,
                batch: list[int] = batch,
                early: dict[int, Generation] = early,
            ) -> None:
                early[r] = g
                if on_batch is not None:
                    on_batch([(batch[r], g)])

            generations = self._generate_batch(
                [ids[i] for i in batch],
                prefix,
                prefix_cache,
                params,
                seed,
                cancel,
                on_row=report_early if rows_as_they_finish else None,
            )
            for r, generation in enumerate(generations):
                results[batch[r]] = generation
            rest = [(batch[r], g) for r, g in enumerate(generations) if r not in early]
            if on_batch is not None and rest:
                on_batch(rest)
        return results

    def _prefix_cache(self, prefix: list[int]) -> Any:
        import torch

        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([prefix]), use_cache=True, logits_to_keep=1)
        return out.cache

    def _generate_batch(
        self,
        rows: list[list[int]],
        prefix: list[int],
        prefix_cache: Any,
        params: GenerationParams,
        seed: int,
        cancel: Cancel | None,
        on_row: Callable[[int, Generation], None] | None = None,
    ) -> list[Generation]:
        """One batch; `on_row(r, generation)` hears of each greedy row that ends early."""
        import torch

        p = len(prefix)
        suffixes = [row[p:] for row in rows]
        width = max(len(s) for s in suffixes)
        input_ids = torch.full((len(rows), p + width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), p + width), dtype=torch.long)
        for r, suffix in enumerate(suffixes):
            if p:
                input_ids[r, :p] = torch.tensor(prefix)
                mask[r, :p] = 1
            input_ids[r, p + width - len(suffix) :] = torch.tensor(suffix)
            mask[r, p + width - len(suffix) :] = 1
        cache = self._batch_cache(prefix_cache, len(rows))
        recorder = LogprobRecorder(len(rows), self.top_k_logprobs, chosen_by(params))
        grammar = self._grammar_mask(params, len(rows))
        started = time.perf_counter()
        early: dict[int, Generation] = {}

        def ended(r: int, tokens: list[int]) -> None:
            latency = time.perf_counter() - started
            early[r] = self._finish(
                tokens, len(rows[r]), params, latency, None, len(rows), recorder=(recorder, r)
            )
            if on_row is not None:
                on_row(r, early[r])

        with self._generate_lock, torch.inference_mode():
            if cache is not None and not params.sampling:
                generated = self._greedy(
                    input_ids,
                    mask,
                    cache,
                    p,
                    params,
                    cancel,
                    recorder,
                    ended if on_row else None,
                    grammar=grammar,
                )
            else:
                kwargs = self._generate_kwargs(
                    params, [cancel] if cancel else [], p + width, recorder, grammar
                )
                kwargs["cache"] = cache
                if params.sampling:
                    torch.manual_seed(seed)
                out = self.model.generate(input_ids=input_ids, attention_mask=mask, **kwargs)
                generated = [out[r, p + width :].tolist() for r in range(len(rows))]
        latency = time.perf_counter() - started
        cancelled = cancel is not None and cancel.is_set()
        return [
            early.get(r)
            or self._finish(
                generated[r],
                len(rows[r]),
                params,
                latency,
                None,
                len(rows),
                cancelled,
                recorder=(recorder, r),
            )
            for r in range(len(rows))
        ]

    def _greedy(
        self,
        input_ids: torch.Tensor,
        mask: torch.Tensor,
        cache: Any,
        cached: int,
        params: GenerationParams,
        cancel: Cancel | None,
        recorder: LogprobRecorder,
        on_end: Callable[[int, list[int]], None] | None = None,
        *,
        grammar: GrammarMask | None = None,
    ) -> list[list[int]]:
        """Greedy decoding that lets finished rows leave the batch.

        transformers' generate keeps computing every row until the last one ends; answers of
        different lengths then pay for the longest. Here a row leaves once it emits EOS or a
        stop string (the cache drops it when an eighth of the batch has finished), and the
        rest go on. Each step is the same forward pass generate makes (positions from the
        attention mask, the first step only on the tokens after the cached prefix), so the
        tokens are the same as generate's greedy tokens. Frequency and presence penalties are
        the same processor generate is given, fed this loop's generated tokens; a repetition
        penalty reads each row's own prompt tokens and answer, never its padding (see
        RepetitionPenalty), so a padded row answers as it does alone. `grammar` masks after
        them, and hears each step's tokens. `recorder` hears each step's final logits (after
        the penalties and the mask) and the tokens chosen from them.
        """
        import torch

        rows = input_ids.shape[0]
        penalty = FrequencyPresencePenalty.for_params(params, 0) if params.penalised else None
        repetition = (
            RepetitionPenalty(params.repetition_penalty, mask)
            if params.repetition_penalty != 1.0
            else None
        )
        prompt_ids = input_ids  # the rows' prompts, as the repetition penalty reads them
        history = input_ids.new_empty((rows, 0))  # tokens generated per batch position
        tracked = penalty is not None or repetition is not None
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        step_ids, step_pos = input_ids[:, cached:], positions[:, cached:]
        slots = list(range(rows))  # batch position → row
        generated: list[list[int]] = [[] for _ in range(rows)]
        finished = [False] * rows
        longest_stop = max((len(x) for x in params.stop), default=0)
        for _ in range(params.max_new_tokens):
            if cancel is not None and cancel.is_set():
                break
            logits = self.model(
                input_ids=step_ids,
                attention_mask=mask,
                position_ids=step_pos,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
            if tracked:  # in float32 and in this order, as generate applies its processors
                logits = logits.float()
                if repetition is not None:
                    logits = repetition(torch.cat([prompt_ids, history], dim=1), logits)
                if penalty is not None:
                    logits = penalty(history, logits)
            if grammar is not None:
                logits = grammar.mask(logits)
            chosen = logits.argmax(-1)
            recorder.observe(logits)
            recorder.took(chosen, slots)
            next_ids = chosen.tolist()
            if grammar is not None:
                grammar.took(next_ids)
            for slot, token in enumerate(next_ids):
                row = slots[slot]
                if finished[row]:
                    continue
                generated[row].append(token)
                if token in self.eos_ids:
                    finished[row] = True
                elif longest_stop:
                    tail = self.tokenizer.decode(generated[row][-(longest_stop + 4) :])
                    finished[row] = first_stop(str(tail), params.stop) is not None
                if finished[row] and on_end is not None:
                    on_end(row, list(generated[row]))
            live = [k for k, row in enumerate(slots) if not finished[row]]
            if not live:
                break
            last_pos = step_pos[:, -1]
            feed = torch.tensor(next_ids)
            if tracked:
                history = torch.cat([history, feed[:, None]], dim=1)
            if len(slots) - len(live) >= max(1, len(slots) // 8):
                keep = torch.tensor(live)
                cache.batch_select_indices(keep)
                mask, last_pos, feed = mask[keep], last_pos[keep], feed[keep]
                if tracked:
                    history, prompt_ids = history[keep], prompt_ids[keep]
                if repetition is not None:
                    repetition.select(keep)
                if grammar is not None:
                    grammar.select(keep)
                slots = [slots[k] for k in live]
            mask = torch.cat([mask, mask.new_ones((len(slots), 1))], dim=1)
            step_ids, step_pos = feed[:, None], (last_pos + 1)[:, None]
        return generated

    def _batch_cache(self, prefix_cache: Any, rows: int) -> Any:
        """A fresh cache for one generate call, holding the shared prefix once per row.

        Its layers grow in place (capacity doubling) instead of concatenating the whole cache
        at every step as transformers' DynamicLayer does: at 32 rows × 200 tokens that copy was
        about 40% of each decoding step on CPU. Models whose layers are not plain full
        attention keep transformers' own cache.
        """
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache(config=self.model.config)
        if all(type(layer) is DynamicLayer for layer in cache.layers):
            growing = _growing_layer_class()
            cache.layers = [growing() for _ in cache.layers]
            if prefix_cache is not None:
                for layer, source in zip(cache.layers, prefix_cache.layers, strict=True):
                    layer.update(  # type: ignore[union-attr]
                        source.keys.expand(rows, -1, -1, -1),
                        source.values.expand(rows, -1, -1, -1),
                    )
            return cache
        if prefix_cache is None:
            return None
        cache = copy.deepcopy(prefix_cache)
        cache.batch_repeat_interleave(rows)
        return cache

    def _generate_kwargs(
        self,
        params: GenerationParams,
        cancels: list[Cancel],
        prompt_len: int,
        recorder: LogprobRecorder,
        grammar: GrammarMask | None = None,
    ) -> dict[str, Any]:
        """Keyword arguments for transformers' generate; `prompt_len` is the width of the
        input_ids it is given (prompt and padding), after which its answer tokens start.
        `grammar` masks after the penalties and before the warpers (see GrammarMask).

        The sampling warpers (temperature, top-k, top-p) are given as processors here, in
        transformers' own order and after our penalties, rather than as generate's options:
        generate appends its warpers after any processor it is given, and `recorder` must see
        the scores the token is drawn from, so it goes last, after them. Generate's own
        repetition penalty still runs first, as before. The tokens drawn are the same."""
        from transformers import LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        class StopWhenCancelled(StoppingCriteria):
            def __call__(self, input_ids: torch.Tensor, scores: Any, **kw: Any) -> torch.Tensor:
                import torch

                stop = any(c.is_set() for c in cancels)
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool)

        class RecordChosen(StoppingCriteria):
            """Called right after each step's tokens are chosen: hands them to the recorder."""

            def __call__(self, input_ids: torch.Tensor, scores: Any, **kw: Any) -> torch.Tensor:
                import torch

                recorder.took(input_ids[:, -1])
                return torch.zeros((input_ids.shape[0],), dtype=torch.bool)

        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": self.pad_id,
            "eos_token_id": sorted(self.eos_ids) or None,
            "repetition_penalty": params.repetition_penalty,
            "do_sample": params.sampling,
        }
        kwargs.update(temperature=None, top_p=None, top_k=None)
        processors: list[Any] = []
        if params.penalised:
            processors.append(FrequencyPresencePenalty.for_params(params, prompt_len))
        if grammar is not None:
            processors.append(grammar)
        if params.sampling:
            if params.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k:
                processors.append(TopKLogitsWarper(top_k=params.top_k))
            if params.top_p < 1.0:
                processors.append(TopPLogitsWarper(top_p=params.top_p))
        kwargs["logits_processor"] = LogitsProcessorList([*processors, recorder])
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        criteria: list[StoppingCriteria] = [RecordChosen()]
        if cancels:
            criteria.append(StopWhenCancelled())
        kwargs["stopping_criteria"] = StoppingCriteriaList(criteria)
        return kwargs

    def _finish(
        self,
        generated: list[int],
        prompt_tokens: int,
        params: GenerationParams,
        latency: float,
        ttft: float | None,
        batch_size: int,
        cancelled: bool = False,
        *,
        recorder: tuple[LogprobRecorder, int] | None = None,
    ) -> Generation:
        """Cut a row at its end (EOS, padding after it finished, a stop string) and say why;
        `recorder` (the batch's, and the row) gives the counted tokens' log-probabilities."""
        end = next(
            (i for i, t in enumerate(generated) if t in self.eos_ids or t == self.pad_id), None
        )
        tokens = generated if end is None else generated[:end]
        text = str(self.tokenizer.decode(tokens, skip_special_tokens=True))
        count = len(tokens)
        ended_by_eos = end is not None and generated[end] in self.eos_ids
        reason: FinishReason
        cut = first_stop(text, params.stop)
        if cut is not None:
            text, reason = text[:cut], "stop"
        elif ended_by_eos:
            reason, count = "eos", count + 1
        elif count >= params.max_new_tokens:
            reason = "length"
        elif cancelled:
            reason = "cancelled"
        else:
            # Ended early with no EOS: a stop string that began in the prompt's last characters
            # (transformers matches stop strings across the prompt/answer boundary).
            reason = "stop" if params.stop else "eos"
        logprobs = recorder[0].result(recorder[1], count) if recorder is not None else None
        return Generation(
            text, reason, prompt_tokens, count, latency, ttft, batch_size, logprobs=logprobs
        )

    # --- streaming ------------------------------------------------------------------------------
    def stream(
        self, model_input: ModelInput, params: GenerationParams, cancel: Cancel | None = None
    ) -> TokenStream:
        params.validate(self.info.context_window)
        ids = self.encode(model_input)
        self.check_fits(len(ids), params)
        return TokenStream(self, ids, params, cancel)


def _select_cache(cache: Any, rows: Any, config: Any) -> Any:
    """A cache whose row i is `cache`'s row `rows[i]` (rows may repeat: a prompt read by several
    choices). Plain full-attention layers are copied into fresh layers; other caches use
    transformers' own `batch_select_indices` on a copy."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    fresh = DynamicCache(config=config)
    plain = all(isinstance(layer, DynamicLayer) for layer in cache.layers)
    if plain and all(type(layer) is DynamicLayer for layer in fresh.layers):
        for target, source in zip(fresh.layers, cache.layers, strict=True):
            target.update(  # type: ignore[union-attr]
                source.keys.index_select(0, rows), source.values.index_select(0, rows)
            )
        return fresh
    copied = copy.deepcopy(cache)
    copied.batch_select_indices(rows)
    return copied


@functools.cache
def _growing_layer_class() -> type:
    """Defined on first use so that importing this module does not import transformers."""
    from transformers.cache_utils import DynamicLayer

    class GrowingLayer(DynamicLayer):  # type: ignore[no-untyped-call]
        """A DynamicLayer whose keys and values live in a buffer that doubles when full."""

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> Any:
            import torch

            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
                self._used = 0
                self._k = self._v = None
            need = self._used + key_states.shape[-2]
            if self._k is None or need > self._k.shape[-2]:
                capacity = max(need, 2 * (0 if self._k is None else self._k.shape[-2]), 64)
                shape = (*key_states.shape[:-2], capacity, key_states.shape[-1])
                k = torch.empty(shape, dtype=key_states.dtype, device=key_states.device)
                v = torch.empty(
                    (*value_states.shape[:-2], capacity, value_states.shape[-1]),
                    dtype=value_states.dtype,
                    device=value_states.device,
                )
                if self._k is not None:
                    k[..., : self._used, :] = self._k[..., : self._used, :]
                    v[..., : self._used, :] = self._v[..., : self._used, :]
                self._k, self._v = k, v
            self._k[..., self._used : need, :] = key_states
            self._v[..., self._used : need, :] = value_states
            self._used = need
            self.keys = self._k[..., :need, :]
            self.values = self._v[..., :need, :]
            return self.keys, self.values

        def batch_select_indices(self, indices: Any) -> None:
            if self.is_initialized and self._k is not None and self._v is not None:
                self._k, self._v = self._k[indices], self._v[indices]
                self.keys = self._k[..., : self._used, :]
                self.values = self._v[..., : self._used, :]

    return GrowingLayer


class TokenStream:
    """Iterate to receive text as it is generated; `.result` holds the Generation afterwards.

    Generation runs in a worker thread feeding a TextIteratorStreamer. Text that could be the
    start of a stop string is held back until it is clear it is not one, so a stop string never
    flashes on screen. Leaving the loop early (or `cancel()`) stops generation at the next token.
    """

    def __init__(
        self,
        backend: TransformersBackend,
        ids: list[int],
        params: GenerationParams,
        cancel: Cancel | None,
    ):
        self.backend, self.ids, self.params = backend, ids, params
        self._stop = Cancel()  # ours: a stop string seen, or the reader left the loop
        self._cancels = [self._stop] + ([cancel] if cancel else [])
        self.result: Generation | None = None
        self.error: BaseException | None = None

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return any(c.is_set() for c in self._cancels)

    def __iter__(self) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        backend, params = self.backend, self.params
        streamer = TextIteratorStreamer(
            backend.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        recorder = LogprobRecorder(1, backend.top_k_logprobs, chosen_by(params))
        grammar = backend._grammar_mask(params, 1)
        kwargs = backend._generate_kwargs(params, self._cancels, len(self.ids), recorder, grammar)
        kwargs["cache"] = backend._batch_cache(None, 1)
        output: dict[str, Any] = {}

        def work() -> None:
            try:
                with backend._generate_lock, torch.inference_mode():
                    if params.sampling:
                        torch.manual_seed(params.seed)
                    ids = torch.tensor([self.ids])
                    output["ids"] = backend.model.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        streamer=streamer,
                        **kwargs,
                    )
            except BaseException as exc:  # surfaced to the caller after the loop
                self.error = exc
                streamer.end()  # type: ignore[no-untyped-call]

        started = time.perf_counter()
        thread = threading.Thread(target=work, name="workbench-stream", daemon=True)
        thread.start()
        ttft: float | None = None
        emitted = ""
        pending = ""
        hold = max((len(s) for s in params.stop), default=1) - 1
        try:
            for piece in streamer:
                if not piece:
                    continue
                if ttft is None:
                    ttft = time.perf_counter() - started
                pending += piece
                cut = first_stop(emitted + pending, params.stop)
                if cut is not None:
                    safe = (emitted + pending)[:cut][len(emitted) :]
                    if safe:
                        emitted += safe
                        yield safe
                    self._stop.set()
                    pending = ""
                    break
                if len(pending) > hold:
                    safe, pending = pending[: len(pending) - hold], pending[len(pending) - hold :]
                    emitted += safe
                    yield safe
        finally:
            if thread.is_alive():  # the reader stopped early: stop generating too
                self._stop.set()
            thread.join()
        if self.error is not None:
            raise ModelError(f"generation failed: {self.error}") from self.error
        latency = time.perf_counter() - started
        generated = output["ids"][0, len(self.ids) :].tolist()
        result = backend._finish(
            generated,
            len(self.ids),
            params,
            latency,
            ttft,
            1,
            self.cancelled,
            recorder=(recorder, 0),
        )
        tail = result.text[len(emitted) :] if result.text.startswith(emitted) else ""
        if tail:
            yield tail
        self.result = result


DOCUMENT_SEPARATOR = "<|endoftext|>"


def _pieces_in_windows(decode: Callable[[list[int]], str], ids: Sequence[int]) -> list[str]:
    """What each token adds to the text, decoding only a short window each time (linear in the
    answer's length): the text of the tokens since the last piece, with the token before them
    for context (a tokenizer may drop a word's leading space at the start of what it decodes),
    minus that context's own text. Bytes of a character not yet complete add nothing until the
    token that completes it."""
    pieces: list[str] = []
    start = read = 0  # the window's context begins at `start`; new text begins after `read`
    for n in range(1, len(ids) + 1):
        context = decode(list(ids[start:read]))
        text = decode(list(ids[start:n]))
        if len(text) > len(context) and text.startswith(context) and not text.endswith("\ufffd"):
            pieces.append(text[len(context) :])
            start, read = read, n
        else:
            pieces.append("")
    _add_rest(pieces, decode(list(ids)), "".join(pieces))
    return pieces


def _pieces_from_prefixes(decode: Callable[[list[int]], str], ids: Sequence[int]) -> list[str]:
    """The same by decoding every prefix whole: quadratic, for tokenizers the windows miss."""
    pieces: list[str] = []
    before = ""
    for n in range(1, len(ids) + 1):
        text = decode(list(ids[:n]))
        if text.startswith(before) and not text.endswith("\ufffd"):
            pieces.append(text[len(before) :])
            before = text
        else:
            pieces.append("")
    _add_rest(pieces, decode(list(ids)), before)
    return pieces


def _add_rest(pieces: list[str], whole: str, joined: str) -> None:
    """An answer cut inside a character: its last token holds the bytes that are left."""
    if pieces and whole.startswith(joined) and len(whole) > len(joined):
        pieces[-1] += whole[len(joined) :]


def start_token(tokenizer: Any) -> int | None:
    """The token a text is scored after: the document separator `<|endoftext|>` when the
    vocabulary has one (GPT-2/SmolLM style: text after it is a fresh document), else BOS, else
    EOS. SmolLM2-Instruct's BOS is `<|im_start|>`, after which plain text is far less likely."""
    found = tokenizer.convert_tokens_to_ids(DOCUMENT_SEPARATOR)  # unknown → the unk id
    if isinstance(found, int) and (
        found != tokenizer.unk_token_id or tokenizer.unk_token == DOCUMENT_SEPARATOR
    ):
        return found
    for candidate in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return None


def _reused_prefix_and_order(ids: list[list[int]]) -> tuple[list[int], list[int]]:
    """How the rows of one call are planned: the tokens they all start with when there are
    enough to be worth computing once (else none), and the rows shortest first, so a batch
    holds rows of similar length."""
    shared = _shared_prefix_len(ids)
    prefix = ids[0][:shared] if shared >= MIN_SHARED_PREFIX else []
    return prefix, sorted(range(len(ids)), key=lambda i: len(ids[i]))


def _shared_prefix_len(ids: list[list[int]]) -> int:
    """Tokens every row starts with, leaving at least one token of each row to compute."""
    if len(ids) < 2:
        return 0
    first = ids[0]
    n = min(len(r) for r in ids) - 1
    for row in ids[1:]:
        k = 0
        while k < n and row[k] == first[k]:
            k += 1
        n = k
    return max(n, 0)


def _batches(
    order: list[int], ids: list[list[int]], prefix: int, max_new: int, batch_size: int | None
) -> list[list[int]]:
    """Consecutive runs of the length-sorted rows; size from a token budget unless given."""
    out: list[list[int]] = []
    current: list[int] = []
    for i in order:
        candidate = [*current, i]
        width = max(len(ids[j]) - prefix for j in candidate) + max_new
        limit = batch_size or max(1, min(MAX_BATCH, BATCH_TOKEN_BUDGET // max(width, 1)))
        if current and len(candidate) > limit:
            out.append(current)
            current = [i]
        else:
            current = candidate
    if current:
        out.append(current)
    return out


def _read_config(resolved: ResolvedModel) -> dict[str, Any]:
    """config.json as written: enough to refuse custom code and find the context window
    without importing transformers."""
    try:
        config = json.loads((resolved.path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{resolved.name}: cannot read its config: {exc}") from None
    if not isinstance(config, dict):
        raise ModelError(f"{resolved.name}: cannot read its config: config.json is not an object")
    return config


def _config_window(config: Any) -> int:
    return int(getattr(config, "max_position_embeddings", None) or 2048)


def _allowed_ids(bitmask: bytes, limit: int = 2) -> list[int]:
    """The first token ids a bitmask (one bit per id, little-endian 32-bit words) allows,
    at most `limit` + 1 of them: enough to tell none, only the end, or more."""
    ids: list[int] = []
    for start in range(0, len(bitmask), 4):
        word = int.from_bytes(bitmask[start : start + 4], "little")
        while word:
            low = word & -word
            ids.append(start * 8 + low.bit_length() - 1)
            if len(ids) > limit:
                return ids
            word ^= low
    return ids


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


@functools.cache
def _executor() -> Any:
    """llguidance's thread pool, which computes a batch's masks in parallel (one per process)."""
    from llguidance import LLExecutor

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return LLExecutor(num_threads=max(1, cores or 1))
