"""The GPT architecture, as GPT-2 has it, in one file.

token embedding + learned position embedding -> N pre-LayerNorm blocks of causal multi-head
self-attention and a GELU MLP, each with a residual -> final LayerNorm -> output projection tied
to the token embedding.

Parameter names and config keys follow the Hugging Face GPT-2 layout (`transformer.wte`,
`transformer.h.0.attn.c_attn`, `n_layer`, `n_embd`, ...), so a GPT-2 checkpoint is a loader away
(see checkpoint.py). The one difference is storage: we use nn.Linear (out, in) where GPT-2 uses
Conv1D (in, out); checkpoint.py transposes at the file boundary.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from .errors import GptkitError


@dataclass
class GPTConfig:
    vocab_size: int = 50257
    n_positions: int = 1024  # the context length: the most tokens the model attends over
    n_embd: int = 768
    n_layer: int = 12
    n_head: int = 12
    n_inner: int | None = None  # MLP hidden size; None means 4 * n_embd, as GPT-2
    activation_function: str = "gelu_new"  # GPT-2's tanh approximation; "gelu" is the exact one
    layer_norm_epsilon: float = 1e-5
    dropout: float = 0.0  # applied to embeddings, attention weights and residual branches
    bias: bool = True  # biases in Linear layers (GPT-2 has them; False has no GPT-2 equivalent)
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise GptkitError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.activation_function not in ACTIVATIONS:
            raise GptkitError(f"activation_function {self.activation_function!r} is not supported "
                              f"(choose from {', '.join(ACTIVATIONS)})")
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            if getattr(self, name) < 1:
                raise GptkitError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise GptkitError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def hidden_size(self) -> int:
        return self.n_inner or 4 * self.n_embd

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# GPT-2's four sizes, and small presets that train in minutes on a laptop CPU.
PRESETS: dict[str, dict[str, int]] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    "tiny": dict(n_layer=2, n_head=2, n_embd=64, n_positions=256),
    "mini": dict(n_layer=4, n_head=4, n_embd=256, n_positions=512),
    "small": dict(n_layer=6, n_head=6, n_embd=384, n_positions=512),
}


def preset_config(name: str, **overrides: Any) -> GPTConfig:
    if name not in PRESETS:
        raise GptkitError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return GPTConfig(**{**PRESETS[name], **overrides})


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS = {"gelu_new": _gelu_new, "gelu_pytorch_tanh": _gelu_new, "gelu": F.gelu, "relu": F.relu}


class KVCache:
    """A preallocated key/value cache for all layers (gpt-fast style: no per-token allocation).

    Keys and values for positions [0, length) are valid; `attend` extends them in place.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_length: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        shape = (config.n_layer, batch_size, config.n_head, max_length, config.n_embd // config.n_head)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0
        self.max_length = max_length

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.length, self.length + k.size(2)
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self, n: int) -> None:
        self.length += n

    def reorder(self, index: torch.Tensor) -> None:
        """Row i becomes old row index[i] (beam search reorders hypotheses every step; a longer
        index also grows the batch, e.g. one prefilled prompt copied to its beams)."""
        if index.numel() != self.k.size(1):
            self.k = self.k.index_select(1, index)
            self.v = self.v.index_select(1, index)
            return
        n = self.length  # in place, and only the filled positions
        self.k[:, :, :, :n] = self.k[:, index, :, :n]
        self.v[:, :, :, :n] = self.v[:, index, :, :n]


def _onednn_linear_dtypes() -> tuple[torch.dtype, ...]:
    """The dtypes whose CPU inference products go to oneDNN directly (x86-64 only: measured there)."""
    import platform
    from .device import cpu_has_fast_bf16
    try:
        if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
            return ()
        torch.ops.mkldnn._linear_pointwise, torch.ops.mkldnn._reorder_linear_weight  # noqa: B018 (raise if absent)
    except Exception:  # pragma: no cover - builds without oneDNN
        return ()
    return (torch.float32, torch.bfloat16) if cpu_has_fast_bf16() else (torch.float32,)


_ONEDNN_DTYPES = _onednn_linear_dtypes()


class Linear(nn.Linear):
    """nn.Linear (same parameters, same training path) with a faster CPU inference path.

    Without autograd or autocast, a CPU fp32/bf16 product goes straight to oneDNN's matmul: the
    default route (MKL's sgemm) streams a decoding step's weights at about half the speed on the
    CPUs measured (benchmarks/bench_generate.py), and decoding one token is nothing but streaming
    weights. A bf16 weight is also reordered once into oneDNN's blocked layout and kept beside the
    parameter (about 2x faster per call again: unpacked, oneDNN reorders it on every call); the
    copy is rebuilt whenever the parameter changes, and is never saved. Results are those of
    F.linear up to float rounding (bitwise for the packed bf16 weight).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _cpu_inference(x, self.weight):
            w = self._packed() if x.dtype == torch.bfloat16 else self.weight
            return torch.ops.mkldnn._linear_pointwise(x, w, self.bias, "none", [], "")
        return F.linear(x, self.weight, self.bias)

    def _packed(self) -> torch.Tensor:
        w = self.weight
        key = (w.data_ptr(), w._version, w.dtype, tuple(w.shape))
        cached = self.__dict__.get("_packed_weight")
        if cached is None or cached[0] != key:
            cached = (key, torch.ops.mkldnn._reorder_linear_weight(w.detach(), 1))
            self.__dict__["_packed_weight"] = cached
        return cached[1]

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles rebuild the packed weight
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_packed_weight", None)
        return state


def _cpu_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.dtype in _ONEDNN_DTYPES and x.device.type == "cpu" and x.dtype == weight.dtype
            and not torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu")
            and not torch.compiler.is_compiling())  # inductor lowers F.linear itself


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, through oneDNN directly for CPU inference (see Linear; no packed copy here)."""
    if _cpu_inference(x, weight):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.layer_idx = layer_idx
        self.c_attn = Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)
        dropout_p = self.attn_dropout if self.training else 0.0
        # Plain causal attention (training, a prompt with no padding) takes SDPA's fused causal path.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                           is_causal=mask is None and k.size(2) == T)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.c_fc = Linear(config.n_embd, config.hidden_size, bias=config.bias)
        self.c_proj = Linear(config.hidden_size, config.n_embd, bias=config.bias)
        self.act = ACTIVATIONS[config.activation_function]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.n_positions, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias),
        ))
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as GPT-2
        self.apply(self._init_weights)
        # GPT-2 scales the residual projections by 1/sqrt(2 * n_layer) at init.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.wte.weight.dtype

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        return n - self.transformer.wpe.weight.numel() if exclude_embeddings else n

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      position_ids: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """The final-LayerNorm output (B, T, n_embd), before the output projection."""
        B, T = input_ids.shape
        past = cache.length if cache is not None else 0
        if past + T > self.config.n_positions:
            raise GptkitError(f"sequence of {past + T} tokens is longer than the model's context "
                              f"(n_positions = {self.config.n_positions})")
        if position_ids is None:
            position_ids = torch.arange(past, past + T, device=input_ids.device).unsqueeze(0)
        x = self.transformer.drop(self.transformer.wte(input_ids) + self.transformer.wpe(position_ids))
        mask = attention_bias(attention_mask, T, past, x.dtype) if (attention_mask is not None or (
            cache is not None and past > 0 and T > 1)) else None
        for block in self.transformer.h:
            x = block(x, mask, cache)
        if cache is not None:
            cache.advance(T)
        return self.transformer.ln_f(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: KVCache | None = None,
                targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, vocab_size) for a (B, T) LongTensor of token ids; or, given targets (the
        next token at each position, -100 to ignore), the mean cross-entropy in nats."""
        h = self.hidden_states(input_ids, attention_mask, position_ids, cache)
        if targets is not None:
            if not isinstance(self.lm_head, nn.Linear):  # a quantised output layer (gptkit.quantize)
                return F.cross_entropy(self.lm_head(h).float().flatten(0, 1), targets.flatten())
            return linear_cross_entropy(h.flatten(0, 1), self.lm_head.weight, targets.flatten())
        return self.lm_head(h)

    def loss(self, input_ids: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self(input_ids, targets=targets)

    def new_cache(self, batch_size: int, max_length: int | None = None,
                  dtype: torch.dtype | None = None) -> KVCache:
        return KVCache(self.config, batch_size, max_length or self.config.n_positions,
                       self.device, dtype or self.dtype)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Token ids: the prompt followed by the new tokens (keyword names as in transformers)."""
        from .generate import generate
        return generate(self, input_ids, **kwargs)

    def stream(self, prompt: Any, **kwargs: Any) -> Any:
        """An iterator of text pieces continuing `prompt` (text or ids); options as generate."""
        from .generate import stream
        return stream(self, prompt, **kwargs)


def attention_bias(attention_mask: torch.Tensor | None, T: int, past: int, dtype: torch.dtype) -> torch.Tensor:
    """Boolean (B or 1, 1, T, past+T) mask: causal, and blind to padded keys (attention_mask == 0).

    attention_mask covers all past+T positions, as in transformers. A query row whose keys are all
    padding (a left-pad position itself) attends to itself so that SDPA never sees an empty row.
    """
    L = past + T
    device = attention_mask.device if attention_mask is not None else None
    q_pos = torch.arange(past, L, device=device).unsqueeze(1)
    causal = torch.arange(L, device=device).unsqueeze(0) <= q_pos  # (T, L)
    if attention_mask is None:
        return causal[None, None]
    keys = attention_mask[:, None, None, :L].bool()  # (B, 1, 1, L)
    mask = causal[None, None] & keys
    self_key = torch.arange(L, device=device).unsqueeze(0) == q_pos
    return mask | (self_key[None, None] & ~mask.any(-1, keepdim=True))


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100) -> torch.Tensor:
    """Mean cross-entropy of logits = h @ weight.T against targets, softmax in fp32.

    With a large vocabulary the (tokens, vocab) logits dominate a small GPT's memory traffic, so
    training never materialises them: the output layer, softmax and their gradients are computed
    together, a chunk of rows at a time (see _ChunkedLinearCrossEntropy). Without grad it is the
    same chunked computation, forward only.
    """
    device_type = h.device.type
    if device_type == "cuda" or torch.compiler.is_compiling():
        # GPUs (and inductor) fuse the plain form well; chunk loops there are Python overhead.
        return F.cross_entropy(F.linear(h, weight).float(), targets, ignore_index=ignore_index)
    compute = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else h.dtype
    needs_grad = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _ChunkedLinearCrossEntropy.apply(h, weight, targets, ignore_index, compute, needs_grad)


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    ROWS = 256  # rows per chunk: (256, 50257) fp32 logits are ~50 MB, reused chunk after chunk

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                ignore_index: int, compute: torch.dtype, needs_grad: bool) -> torch.Tensor:
        with torch.autocast(h.device.type, enabled=False):
            hc, wc = h.to(compute), weight.to(compute)
            valid = targets != ignore_index
            n_valid = valid.sum().clamp(min=1)
            safe_targets = torch.where(valid, targets, 0)
            total = torch.zeros((), device=h.device, dtype=torch.float32)
            grad_h = torch.empty_like(hc) if needs_grad else None
            grad_w = torch.zeros(weight.shape, device=weight.device, dtype=torch.float32) if needs_grad else None
            for s in range(0, hc.size(0), _ChunkedLinearCrossEntropy.ROWS):
                e = min(s + _ChunkedLinearCrossEntropy.ROWS, hc.size(0))
                logits = hc[s:e] @ wc.t()
                tgt = safe_targets[s:e, None]
                v = valid[s:e]
                if compute == torch.float32 or not needs_grad:
                    logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # one fused kernel
                    total -= (logp.gather(1, tgt).squeeze(1) * v).sum()
                    if not needs_grad:
                        continue
                    g = logp.exp_()
                else:
                    # bf16 training: softmax computed in fp32 inside one fused kernel and rounded once
                    # to bf16, which halves the memory traffic of every pass over the logits; the
                    # loss from it is within 2^-8 relative of p_target per token.
                    g = torch.softmax(logits, dim=-1)
                    total -= (g.gather(1, tgt).squeeze(1).float().clamp_min(1e-38).log() * v).sum()
                # d(mean loss)/d(logits) = (softmax - onehot) / n_valid, zero for ignored rows
                rows = torch.arange(e - s, device=g.device)
                g[rows, tgt[:, 0]] -= 1  # indexing, not scatter_add_: that converts the whole bf16 chunk
                g = g.mul_((v.float() / n_valid)[:, None].to(g.dtype)).to(compute)
                grad_h[s:e] = g @ wc
                grad_w.add_(g.t() @ hc[s:e])
        if needs_grad:
            ctx.save_for_backward(grad_h, grad_w)
            ctx.dtypes = (h.dtype, weight.dtype)
        return total / n_valid

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_h, grad_w = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        return ((grad_h * grad_out).to(h_dtype), (grad_w * grad_out).to(w_dtype), None, None, None, None)
