"""Hub ids: download (safetensors preferred), cache, offline mode.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import GptkitError
from .weights import BIN_FILE, BIN_INDEX_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE

# ---------------------------------------------------------------------------- the Hub

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
HUB_FILES = ["config.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"]
HUB_SAFETENSORS = [WEIGHTS_FILE, WEIGHTS_INDEX_FILE, "model-*-of-*.safetensors"]
HUB_BIN = [BIN_FILE, BIN_INDEX_FILE, "pytorch_model-*-of-*.bin"]


def resolve_model_dir(name_or_path: str | os.PathLike) -> Path:
    """A local directory as is; a Hub id ('gpt2', 'openai-community/gpt2') downloaded and cached
    through huggingface_hub (safetensors preferred; pytorch_model.bin only where there is none)."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        if not path.is_dir():
            raise GptkitError(f"{path}: not a directory (a model is a directory with config.json and "
                              "model.safetensors)")
        return path
    name = os.fspath(name_or_path)
    looks_like_a_file = name.endswith((".json", ".safetensors", ".bin"))
    if not HUB_ID.match(name) or name.startswith(".") or ".." in name or looks_like_a_file:
        raise GptkitError(f"{path}: no such model directory")
    return _download(name)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now, or as huggingface_hub read it at import."""
    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").upper()
    if env in ("1", "ON", "YES", "TRUE"):
        return True
    try:
        from huggingface_hub import constants
        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return False


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import errors as hf_errors
        from huggingface_hub import snapshot_download
    except ImportError:
        raise GptkitError(f"{repo_id!r} is not a local directory, and huggingface_hub (needed to download "
                          "it from the Hub) is not installed") from None
    offline = hub_offline()
    not_found = tuple(getattr(hf_errors, n) for n in ("RepositoryNotFoundError", "GatedRepoError",
                                                      "RevisionNotFoundError") if hasattr(hf_errors, n))
    incomplete = getattr(hf_errors, "IncompleteSnapshotError", ())  # huggingface_hub >= 1.x
    try:
        local = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES + HUB_SAFETENSORS,
                                       local_files_only=offline))
        if not (local / WEIGHTS_FILE).is_file() and not (local / WEIGHTS_INDEX_FILE).is_file():
            local = Path(snapshot_download(repo_id, allow_patterns=HUB_FILES + HUB_BIN,
                                           local_files_only=offline))
        return local
    except not_found:
        raise GptkitError(f"{repo_id!r}: no such local directory, and no accessible model of that name on "
                          "the Hugging Face Hub (private or gated repos need `hf auth login`)") from None
    except incomplete:
        raise GptkitError(f"{repo_id!r}: its cached download is incomplete and the Hugging Face Hub cannot be "
                          "reached to finish it; pass a local model directory instead") from None
    except Exception as e:  # LocalEntryNotFoundError; connection errors differ between hub versions
        if not _is_connection_problem(e):
            raise
        why = "offline mode is on (HF_HUB_OFFLINE)" if offline else "the Hugging Face Hub cannot be reached"
        raise GptkitError(f"{repo_id!r} is not a local directory, {why}, and it is not in the local Hugging "
                          "Face cache; pass a local model directory (config.json + model.safetensors) "
                          "instead") from None


def _is_connection_problem(e: BaseException) -> bool:
    names = {c.__name__ for c in type(e).__mro__}
    if names & {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "ConnectError",
                "TimeoutException", "Timeout", "ProxyError"}:
        return True
    return "connect" in type(e).__name__.lower() or "timeout" in type(e).__name__.lower()
