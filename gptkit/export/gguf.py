"""GGUF out: a gptkit model as one llama.cpp file, tokenizer inside, written with ggml's `gguf` package.

The tensors are the Hugging Face state dict gptkit's saver writes (gptkit/hf: `hf_state`), renamed
to GGUF's names by gguf's own TensorNameMap, as llama.cpp's convert_hf_to_gguf.py does, with the
same two transforms:

  gpt2 (GPT-2 layout)    the Conv1D weights (in, out) of c_attn, c_proj, c_fc are transposed to
                         (out, in), the nn.Linear order GGUF stores.
  llama (Llama layout,   the rows of q_proj and k_proj (weights and biases) are permuted per head
  also Mistral's)        from transformers' rotate-half RoPE to llama.cpp's interleaved pairs:
                         w.reshape(heads, 2, head_dim // 2, -1).swapaxes(1, 2), heads = the
                         key/value heads for k_proj (grouped-query attention).
  qwen2, qwen3            nothing: llama.cpp runs Qwen2 (biases on q, k, v) and Qwen3 (QK-norm) with
                         rotate-half (NEOX) RoPE.

RoPE scaling as convert_hf_to_gguf.py writes it: "linear" as rope.scaling.type + rope.scaling.factor;
Llama-3's ("llama3", Llama layout only: llama.cpp's llama graph reads it) as the `rope_freqs` tensor,
one factor per frequency that llama.cpp divides the frequency by, here the default inverse
frequencies over the scaled ones gptkit computes (gptkit/rope.py), so the two agree by construction.

Shapes are written in torch's order (out, in); GGUF lists dimensions the other way round (ne0 = in),
which is what gguf's reader shows. Vectors (norms, biases) stay float32 in every --quantize mode, as
llama.cpp's converter keeps them; q8_0 quantizes each matrix in blocks of 32 along a row with gguf's
quants module (a row whose length is not a multiple of 32 stays f16).

What GGUF (or llama.cpp's graph for that architecture) cannot compute exactly is refused by name
before anything is written: an activation llama.cpp hard-codes otherwise (GPT-2: tanh GELU; Llama:
SiLU), other RoPE scalings (YaRN: llama.cpp's attention factor is not transformers'), sliding
windows, a tokenizer llama.cpp would tokenize otherwise (vocab_json.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import GptkitError, OptionError
from ..files import atomic_path
from ..tokenizer_json import JsonTokenizer
from .vocab import Vocab, gguf_vocab
from .vocab_json import json_vocab

# --quantize -> (the type of matrices, llama.cpp's general.file_type)
QUANTIZE = ("f32", "f16", "q8_0")
FORMATS = ("gguf",)
# transformers' model_type -> llama.cpp's architecture
ARCHES = {"gpt2": "gpt2", "llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
# llama.cpp's graphs hard-code one activation per architecture
ACTIVATION = {"gpt2": ("gelu_new", "gelu_pytorch_tanh"), "llama": ("silu",), "qwen2": ("silu",), "qwen3": ("silu",)}
# RoPE scalings llama.cpp computes as transformers does, per architecture
ROPE_TYPES = {"llama": ("default", "linear", "llama3"), "qwen2": ("default", "linear"), "qwen3": ("default", "linear")}
_CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise GptkitError("GGUF export needs ggml's gguf package: pip install gguf "
                          "(or pip install 'gptkit[export]')") from None
    return gguf


@dataclass
class Tensor:
    """One tensor as it will be written: GGUF's name, the array (quantized bytes for q8_0), its type."""
    name: str
    source: str  # the Hugging Face name it came from
    data: np.ndarray
    qtype: Any  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # the logical shape, torch order


@dataclass
class Plan:
    """Everything to be written, computed and checked before the file is opened."""
    arch: str
    quantize: str
    metadata: list[tuple[str, Any]]  # (GGUFWriter method, value)
    vocab: Vocab
    tensors: list[Tensor] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(t.data.nbytes for t in self.tensors)


@dataclass
class ExportResult:
    path: Path
    arch: str
    quantize: str
    tensors: int
    bytes: int
    vocab_size: int
    tokenizer: str


def export_gguf(model: str | os.PathLike, out: str | os.PathLike, quantize: str = "f16",
                overwrite: bool = False) -> ExportResult:
    """Write `model` (a run directory, a Hugging Face directory or Hub id gptkit loads) as the GGUF
    file `out`, with its tokenizer. quantize: "f32", "f16" or "q8_0" (matrices; vectors stay f32).

    Refused before anything is written: an existing `out` (unless overwrite), `out` being one of
    the model's own files, a model or tokenizer GGUF cannot hold. The file appears whole or not at
    all (written beside `out` and renamed)."""
    if quantize not in QUANTIZE:
        raise OptionError("quantize", f"must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    _gguf()
    out = Path(out)
    if Path(model).is_dir():
        check_not_input(out, Path(model))
    out = check_out(out, overwrite)
    from ..hf import hf_state, load_model, resolve_model_dir
    directory = resolve_model_dir(model)
    check_not_input(out, directory)
    gpt = load_model(directory)
    if gpt.tokenizer is None:
        raise GptkitError(gpt.tokenizer_error or f"{directory}: no tokenizer files (vocab.json + merges.txt, or "
                          "tokenizer.json) beside the model; a GGUF file must hold its tokenizer")
    hf_config, state = hf_state(gpt)
    template = getattr(gpt.tokenizer, "chat_template", None) or _chat_template(directory)  # chat_template.jinja too
    plan = plan_gguf(hf_config, state, gpt.tokenizer, quantize, chat_template=template)
    plan.metadata.insert(0, ("add_name", Path(model).name or directory.name))
    del state, gpt
    write_gguf(plan, out)
    return ExportResult(out, plan.arch, quantize, len(plan.tensors), out.stat().st_size, plan.vocab.size,
                        plan.vocab.kind)


# ---------------------------------------------------------------------------- checks

def check_out(out: Path, overwrite: bool) -> Path:
    """OUT may be written (gptkit/outputs.py): new, or a GGUF file to replace with --overwrite."""
    from ..outputs import output_file
    return output_file(out, "out", ours=is_gguf, overwrite=overwrite, what="GGUF file")


def is_gguf(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(4) == b"GGUF"


def check_not_input(out: Path, directory: Path) -> None:
    """`out` must not be (or replace) a file of the model being read."""
    target = out.resolve()
    for p in directory.iterdir():
        if p.resolve() == target or (out.exists() and p.exists() and os.path.samefile(p, out)):
            raise OptionError("out", f"{out} is a file of the model being exported ({directory}); "
                              "write the GGUF file elsewhere")


def _chat_template(directory: Path) -> str | None:
    import json
    try:
        d = json.loads((directory / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    t = d.get("chat_template") if isinstance(d, dict) else None
    return t if isinstance(t, str) and t else None


def arch_for(hf_config: dict[str, Any]) -> str:
    """llama.cpp's architecture for a config.json, or a GptkitError naming what GGUF cannot hold."""
    kind = hf_config.get("model_type")
    if kind not in ARCHES:
        raise GptkitError(f"GGUF export supports the GPT-2, Llama, Mistral, Qwen2 and Qwen3 layouts; this model is "
                          f"{kind!r}")
    arch = ARCHES[kind]
    act_key = "activation_function" if arch == "gpt2" else "hidden_act"
    act = hf_config.get(act_key, "gelu_new" if arch == "gpt2" else "silu")
    if act not in ACTIVATION[arch]:
        raise GptkitError(f"{act_key}={act!r} cannot be held in GGUF's {arch} architecture: llama.cpp computes "
                          f"{' / '.join(ACTIVATION[arch])} there")
    if arch != "gpt2":
        for key in ("rope_parameters", "rope_scaling"):  # transformers >= 5 and < 5 spell it differently
            rope = hf_config.get(key) or {}
            rope_type = rope.get("rope_type", rope.get("type", "default")) if isinstance(rope, dict) else rope
            if rope_type not in (*ROPE_TYPES[arch], None):
                raise GptkitError(f"rope scaling {rope_type!r} ({key}) is not exported to GGUF's {arch} architecture "
                                  f"(it holds {', '.join(ROPE_TYPES[arch])})")
        if hf_config.get("sliding_window") and hf_config.get("use_sliding_window", kind == "mistral"):
            raise GptkitError(f"sliding_window={hf_config['sliding_window']} is not exported to GGUF")
        if hf_config.get("head_dim") not in (None, hf_config["hidden_size"] // hf_config["num_attention_heads"]):
            raise GptkitError(f"head_dim={hf_config['head_dim']} other than hidden_size / num_attention_heads is "
                              "not exported to GGUF")
    return arch


# ---------------------------------------------------------------------------- the plan

def plan_gguf(hf_config: dict[str, Any], state: dict[str, torch.Tensor], tokenizer: Any, quantize: str,
              chat_template: str | None = None) -> Plan:
    """The GGUF file of a Hugging Face config + state dict + gptkit tokenizer, checked, in memory."""
    gguf = _gguf()
    arch = arch_for(hf_config)
    n_vocab = hf_config["vocab_size"]
    vocab = json_vocab(tokenizer, n_vocab) if isinstance(tokenizer, JsonTokenizer) else gguf_vocab(tokenizer, n_vocab)
    plan = Plan(arch, quantize, _metadata(arch, hf_config, quantize), vocab)
    if chat_template:
        plan.metadata.append(("add_chat_template", chat_template))
    n_layer = hf_config["n_layer" if arch == "gpt2" else "num_hidden_layers"]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_layer)
    for hf_name, t in state.items():
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise GptkitError(f"tensor {hf_name} has no place in GGUF's {arch} architecture")
        a = transform(arch, hf_name, t.detach().to("cpu", torch.float32), hf_config).numpy()
        plan.tensors.append(_encode(gguf, gguf_name, hf_name, a, quantize))
    if _rope(hf_config)[0] == "llama3":
        name = gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS]
        plan.tensors.append(_encode(gguf, f"{name}.weight", "rope_parameters", rope_freqs(hf_config), "f32"))
    return plan


def _rope(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(rope type, its parameters) of a config.json, transformers >= 5 or < 5."""
    rope = d.get("rope_parameters") or d.get("rope_scaling") or {}
    rope = rope if isinstance(rope, dict) else {}
    return rope.get("rope_type", rope.get("type", "default")) or "default", rope


def rope_freqs(d: dict[str, Any]) -> np.ndarray:
    """Llama-3 RoPE as llama.cpp's rope_freqs: default inverse frequency / scaled one, per frequency."""
    from ..rope import inv_freq
    kind, rope = _rope(d)
    head_dim = d["hidden_size"] // d["num_attention_heads"]
    theta = float(rope.get("rope_theta", d.get("rope_theta", 10000.0)))
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "type")}
    base, _ = inv_freq(head_dim, theta, None, d["max_position_embeddings"])
    scaled, _ = inv_freq(head_dim, theta, {**scaling, "rope_type": kind}, d["max_position_embeddings"])
    return (base / scaled).numpy().astype(np.float32)


def transform(arch: str, hf_name: str, t: torch.Tensor, hf_config: dict[str, Any]) -> torch.Tensor:
    """A Hugging Face tensor in the order llama.cpp computes with (see the module docstring)."""
    if arch == "gpt2" and hf_name.endswith(_CONV1D):
        return t.t().contiguous()
    if arch == "llama" and (".q_proj." in hf_name or ".k_proj." in hf_name):
        heads = hf_config["num_attention_heads"]
        if ".k_proj." in hf_name:
            heads = hf_config.get("num_key_value_heads") or heads
        return permute_rope(t, heads)
    return t.contiguous()


def permute_rope(t: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of each head from rotate-half order (x0..x_{d/2-1}, then their partners) to interleaved
    pairs (x0, x_{d/2}, x1, x_{d/2+1}, ...); a bias (1-D) the same way."""
    shape = t.shape
    return t.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape).contiguous()


def _encode(gguf: Any, name: str, source: str, a: np.ndarray, quantize: str) -> Tensor:
    Q = gguf.GGMLQuantizationType
    qtype = Q.F32
    if a.ndim >= 2 and quantize == "f16":
        qtype = Q.F16
    elif a.ndim >= 2 and quantize == "q8_0":
        qtype = Q.Q8_0 if a.shape[-1] % gguf.GGML_QUANT_SIZES[Q.Q8_0][0] == 0 else Q.F16
    data = gguf.quants.quantize(a, qtype)
    return Tensor(name, source, data, qtype, tuple(a.shape))


def _metadata(arch: str, d: dict[str, Any], quantize: str) -> list[tuple[str, Any]]:
    """GGUF's hyperparameters for the architecture, from config.json (the keys convert_hf_to_gguf writes)."""
    gguf = _gguf()
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quantize]
    if arch == "gpt2":
        n_embd = d["n_embd"]
        return [("add_context_length", d.get("n_positions") or d.get("n_ctx")), ("add_embedding_length", n_embd),
                ("add_feed_forward_length", d.get("n_inner") or 4 * n_embd), ("add_block_count", d["n_layer"]),
                ("add_head_count", d["n_head"]), ("add_layer_norm_eps", float(d["layer_norm_epsilon"])),
                ("add_file_type", ftype)]
    kind, rope = _rope(d)
    theta = float(rope.get("rope_theta", d.get("rope_theta", 10000.0)))
    heads = d["num_attention_heads"]
    scaling = []
    if kind == "linear":
        scaling = [("add_rope_scaling_type", gguf.RopeScalingType.LINEAR),
                   ("add_rope_scaling_factor", float(rope["factor"]))]
    return scaling + [("add_vocab_size", d["vocab_size"]), ("add_context_length", d["max_position_embeddings"]),
            ("add_embedding_length", d["hidden_size"]), ("add_feed_forward_length", d["intermediate_size"]),
            ("add_block_count", d["num_hidden_layers"]), ("add_head_count", heads),
            ("add_head_count_kv", d.get("num_key_value_heads") or heads),
            ("add_rope_dimension_count", d["hidden_size"] // heads), ("add_rope_freq_base", theta),
            ("add_layer_norm_rms_eps", float(d["rms_norm_eps"])), ("add_file_type", ftype)]


# ---------------------------------------------------------------------------- the file

def write_gguf(plan: Plan, out: str | os.PathLike) -> None:
    """Write the plan to `out` atomically (a temporary file beside it, renamed when complete)."""
    gguf = _gguf()
    with atomic_path(out) as tmp:
        w = gguf.GGUFWriter(tmp, plan.arch)
        try:
            for method, value in plan.metadata:
                getattr(w, method)(value)
            plan.vocab.add_to(w)
            for t in plan.tensors:
                w.add_tensor(t.name, t.data, raw_dtype=t.qtype)  # q8_0: bytes; gguf derives the shape
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
        finally:
            w.close()
