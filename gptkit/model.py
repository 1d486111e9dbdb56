"""The GPT architecture, as GPT-2 has it, in one file, with switchable modern options.

token embedding + learned position embedding -> N pre-LayerNorm blocks of causal multi-head
self-attention and a GELU MLP, each with a residual -> final LayerNorm -> output projection tied
to the token embedding.

Options (all off by default, so the default is GPT-2 exactly): rotary position embeddings
(`position_embedding="rope"`, Llama's rotate-half form), RMSNorm (`norm="rmsnorm"`), no biases
(`bias=False`), gated MLPs (`gated_mlp=True` with `activation_function="silu"`: SwiGLU) and ReLU²
(`activation_function="relu2"`), QK-norm (`qk_norm`: RMSNorm of each head's queries and keys,
before RoPE, as Qwen3), grouped-query attention (`n_kv_head` key/value heads shared by groups of
the `n_head` query heads; the KV cache holds only those), an untied output layer (`tie_word_embeddings=False`), zero-initialised
output projections (`zero_init`) and logit soft-capping (`logit_softcap`: c * tanh(z / c)).
Which file layout a combination can be saved in is hf/family.py's business (one adapter per family).

Parameter names and config keys follow the Hugging Face GPT-2 layout (`transformer.wte`,
`transformer.h.0.attn.c_attn`, `n_layer`, `n_embd`, ...), so a GPT-2 checkpoint is a loader away
(see gptkit/hf/). The one difference is storage: we use nn.Linear (out, in) where GPT-2 uses
Conv1D (in, out); hf/gpt2.py transposes at the file boundary.
"""
from __future__ import annotations

import math
from dataclasses import Field, asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from torch.nn import functional as F

from .engine.cache import KVCache
from .errors import GptkitError, OptionError
from .kernels import Linear, attention
from .rope import check_rope_scaling, cos_sin, inv_freq

if TYPE_CHECKING:
    from .tokenizer import Tokenizer


def _gelu_new(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def _relu2(x: torch.Tensor) -> torch.Tensor:
    return F.relu(x).square()


# names as transformers' ACT2FN has them, so that config.json round-trips
ACTIVATIONS = {"gelu_new": _gelu_new, "gelu_pytorch_tanh": _gelu_new, "gelu": F.gelu, "relu": F.relu,
               "relu2": _relu2, "silu": F.silu}


def _field(default: Any, help: str, role: str = "shape", **meta: Any) -> Any:
    """A GPTConfig field with its help (the `gptkit train` flag's --help line) and its role:
      shape     what the weights compute (the default): a --resume must keep it, --init-from takes it
      tokenizer the vocabulary's size: set from the tokenizer, not an option, but part of the shape
      special   a special token id: set from the tokenizer, not part of the shape
      init      how a fresh model starts (zero_init): a loaded or resumed model ignores it
      training  how training runs (dropout): may change on --resume and with --init-from
    and optionally `choices` and `aliases` (older option names, still read: flags and config files)."""
    return field(default=default, metadata={"help": help, "role": role, **meta})


@dataclass
class GPTConfig:
    """The model's architecture: the one config that flags, config files, train_config.json, the
    --resume/--init-from checks and the saved config.json are all derived from (each option of
    `gptkit train` is one of these fields, under its name)."""
    vocab_size: int = _field(50257, "tokens in the vocabulary", role="tokenizer")
    n_positions: int = _field(1024, "the model's context length, in tokens: the most it attends over")
    n_embd: int = _field(768, "model width, in channels")
    n_layer: int = _field(12, "transformer blocks")
    n_head: int = _field(12, "attention (query) heads per block")
    n_kv_head: int | None = _field(None, "key/value heads per block, each shared by n_head / n_kv_head query heads "
                                         "(grouped-query attention; none: n_head, multi-head)")
    head_size: int | None = _field(None, "each head's width (none: n_embd / n_head; Qwen3 sets it apart)")
    n_inner: int | None = _field(None, "the MLP's hidden width (none: 4 x n_embd, or 8/3 x n_embd rounded up to "
                                       "64 for a gated MLP)")
    activation_function: str = _field("gelu_new", "the MLP's activation: gelu_new is GPT-2's tanh approximation, "
                                                  "gelu the exact one; silu with --gated-mlp is SwiGLU",
                                      choices=tuple(ACTIVATIONS))
    layer_norm_epsilon: float = _field(1e-5, "epsilon of the LayerNorms / RMSNorms")
    dropout: float = _field(0.0, "dropout probability on embeddings, attention weights and residual branches",
                            role="training")
    bias: bool = _field(True, "biases in Linear and LayerNorm layers (GPT-2 has them)")
    qkv_bias: bool = _field(False, "biases on the query/key/value projection even where --no-bias (Qwen2)")
    bos_token_id: int | None = _field(None, "the beginning-of-text token", role="special")
    eos_token_id: int | None = _field(None, "the end-of-text token", role="special")
    # modern options (defaults: GPT-2)
    position_embedding: str = _field("learned", "learned (GPT-2) or rope (rotary, as Llama)",
                                     choices=("learned", "rope"))
    rope_theta: float = _field(10000.0, "rotary embedding base")
    rope_scaling: dict[str, Any] | None = _field(None, "transformers' rope_scaling, a JSON object (rope_type linear, "
                                                       "llama3 or yarn with their keys: rope.py)")
    norm: str = _field("layernorm", "LayerNorm (GPT-2) or RMSNorm", choices=("layernorm", "rmsnorm"))
    gated_mlp: bool = _field(False, "a gated MLP, down(act(gate(x)) * up(x)); with activation silu that is SwiGLU")
    qk_norm: bool = _field(False, "RMSNorm of each head's queries and keys, before RoPE (as Qwen3)")
    tie_word_embeddings: bool = _field(True, "the output layer is the token embedding (GPT-2)",
                                       aliases=("tie_embeddings",))
    zero_init: bool = _field(False, "start the output projections (and an untied output layer) at zero",
                             role="init")
    logit_softcap: float | None = _field(None, "cap the logits at c * tanh(logits / c) (none: off)")

    def __post_init__(self) -> None:
        """Every field checked; a bad one is an OptionError naming it (on the command line: its flag)."""
        if self.n_kv_head is None:
            self.n_kv_head = self.n_head
        for name in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_kv_head", "head_size", "n_inner"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(name, f"must be >= 1, got {value}")
        if self.head_size is None and self.n_embd % self.n_head:
            raise OptionError("n_head", f"{self.n_head}: n_embd ({self.n_embd}) must be divisible by n_head")
        if self.n_head % self.n_kv_head:
            raise OptionError("n_kv_head", f"{self.n_kv_head}: n_head ({self.n_head}) must be a multiple of n_kv_head")
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise OptionError(f.name, f"{getattr(self, f.name)!r} is not supported (choose from {', '.join(choices)})")
        if not 0.0 <= self.dropout < 1.0:
            raise OptionError("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.position_embedding == "rope" and self.head_dim % 2:
            raise OptionError("head_size", f"rotary embeddings need an even head size, got {self.head_dim}")
        check_rope_scaling(self.rope_scaling)
        for name in ("rope_theta", "layer_norm_epsilon", "logit_softcap"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise OptionError(name, f"must be a finite number > 0, got {value}")

    @property
    def hidden_size(self) -> int:
        """The MLP's hidden width: 4 x n_embd as GPT-2; a gated MLP's default, 8/3 x n_embd rounded
        up to a multiple of 64, keeps the parameter count of GPT-2's MLP (as Llama)."""
        if self.n_inner:
            return self.n_inner
        return -(-8 * self.n_embd // 3 // 64) * 64 if self.gated_mlp else 4 * self.n_embd

    @property
    def head_dim(self) -> int:
        return self.head_size or self.n_embd // self.n_head

    def kv_cache_shape(self, batch_size: int, max_length: int) -> tuple[int, ...]:
        """(layers, batch, key/value heads, positions, head_dim): only the key/value heads are
        cached, so grouped-query attention divides the cache by n_head / n_kv_head."""
        return (self.n_layer, batch_size, self.n_kv_head, max_length, self.head_dim)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide what the weights compute (roles shape and tokenizer), in one form
        whatever spelling made them: derived sizes filled in (head_size, n_inner, n_kv_head), q/k/v
        biases only where --no-bias leaves them apart, the rotary settings only with rotary positions.
        Two configs compute the same function of the same weights iff these are equal: the --resume
        check and the save-layout check compare them."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["role"] in ("shape", "tokenizer")}
        d.update(head_size=self.head_dim, n_inner=self.hidden_size, qkv_bias=self.qkv_bias and not self.bias)
        if self.position_embedding != "rope":
            d.update(rope_theta=None, rope_scaling=None)
        return d

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def model_options() -> tuple[Field, ...]:
    """GPTConfig's fields that are options (of `gptkit train`: flags, config files, train_config.json);
    the others, the vocabulary's size and special ids, come from the tokenizer."""
    return tuple(f for f in fields(GPTConfig) if f.metadata["role"] not in ("tokenizer", "special"))


# The MLPs by name (`--mlp`, a shorthand for the two fields that make each)
MLPS: dict[str, dict[str, Any]] = {"gelu": dict(activation_function="gelu_new", gated_mlp=False),
                                   "relu2": dict(activation_function="relu2", gated_mlp=False),
                                   "swiglu": dict(activation_function="silu", gated_mlp=True)}


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


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm computed in the input's dtype (one fused kernel under bf16 autocast too; the
    weight is cast to it rather than the input to the weight's fp32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


def make_norm(config: GPTConfig, dim: int | None = None) -> nn.Module:
    dim = dim or config.n_embd
    if config.norm == "rmsnorm":
        return RMSNorm(dim, eps=config.layer_norm_epsilon)
    return nn.LayerNorm(dim, eps=config.layer_norm_epsilon, bias=config.bias)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class CausalSelfAttention(nn.Module):
    """Causal self-attention with n_head query heads sharing n_kv_head key/value heads (grouped-query
    attention; n_kv_head == n_head is GPT-2's multi-head attention). c_attn projects to the queries,
    keys and values side by side, (n_head + 2 * n_kv_head) * head_dim outputs: GPT-2's c_attn layout
    where the head counts are equal."""

    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = config.n_head, config.n_kv_head, config.head_dim
        self.q_size, self.kv_size = config.n_head * config.head_dim, config.n_kv_head * config.head_dim
        self.layer_idx = layer_idx
        self.c_attn = Linear(config.n_embd, self.q_size + 2 * self.kv_size, bias=config.bias or config.qkv_bias)
        self.c_proj = Linear(self.q_size, config.n_embd, bias=config.bias)
        if config.qk_norm:
            self.q_norm = RMSNorm(config.head_dim, eps=config.layer_norm_epsilon)
            self.k_norm = RMSNorm(config.head_dim, eps=config.layer_norm_epsilon)
        self.qk_norm = config.qk_norm
        self.attn_dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, _ = x.shape  # batch, sequence length, n_embd
        q, k, v = self.c_attn(x).split((self.q_size, self.kv_size, self.kv_size), dim=2)
        # (B, T, heads * hs) -> (B, heads, T, hs): one attention per head
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k, v = (t.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2) for t in (k, v))
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, n_kv_head, past + T, hs)
        dropout_p = self.attn_dropout if self.training else 0.0
        # Plain causal attention (training, a prompt with no padding) takes SDPA's fused causal path;
        # each group of n_head / n_kv_head query heads reads one key/value head (enable_gqa).
        y = attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=mask is None and k.size(2) == T,
                      enable_gqa=self.n_kv_head != self.n_head)
        y = y.transpose(1, 2).reshape(B, T, self.q_size)  # heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """GPT-2's MLP, c_proj(act(c_fc(x))); gated, c_fc computes gate and up together (in that order)
    and the hidden state is act(gate) * up."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.gated = config.gated_mlp
        width = config.hidden_size
        self.c_fc = Linear(config.n_embd, 2 * width if self.gated else width, bias=config.bias)
        self.c_proj = Linear(width, config.n_embd, bias=config.bias)
        self.act = ACTIVATIONS[config.activation_function]
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.gated:
            gate, up = h.chunk(2, dim=-1)
            h = self.act(gate) * up
        else:
            h = self.act(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer_idx)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, cache: KVCache | None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask, cache, rope)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """The model. What a loader knows beside the weights is declared here and given to the
    constructor (gptkit.hf.load_model passes it; a fresh model has none): `tokenizer`, the one saved
    beside the weights (make_chat_ready replaces it when it grows the vocabulary), `tokenizer_error`,
    why there is none where the files were unusable, and `source`, the directory the weights were
    read from. Whether the model is quantized is read from its layers (`quantized`)."""

    def __init__(self, config: GPTConfig, *, tokenizer: Tokenizer | None = None, tokenizer_error: str | None = None,
                 source: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.tokenizer_error = tokenizer_error
        self.source = source
        modules = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.position_embedding == "learned":
            modules["wpe"] = nn.Embedding(config.n_positions, config.n_embd)
        modules.update(drop=nn.Dropout(config.dropout),
                       h=nn.ModuleList(Block(config, i) for i in range(config.n_layer)),
                       ln_f=make_norm(config))
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight  # tied, as GPT-2
        self.apply(self._init_weights)
        # GPT-2 scales the residual projections by 1/sqrt(2 * n_layer) at init; zero_init starts
        # them (and an untied output layer) at zero, as modded-nanogpt: each block begins as the identity.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                if config.zero_init:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if config.zero_init and not config.tie_word_embeddings:
            nn.init.zeros_(self.lm_head.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    @property
    def quantized(self) -> str | None:
        """The quantization of its layers ("int8" once gptkit.quantize swapped them), None if none."""
        return next((m.quantization for m in self.modules() if isinstance(getattr(m, "quantization", None), str)), None)

    def set_dropout(self, p: float) -> None:
        """Dropout probability p in every layer (a loaded model trained further with --dropout)."""
        self.config = replace(self.config, dropout=p)  # checked there
        for m in self.modules():
            if isinstance(m, nn.Dropout):
                m.p = p
            elif isinstance(m, CausalSelfAttention):
                m.attn_dropout = p

    @property
    def device(self) -> torch.device:
        return self.transformer.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.wte.weight.dtype

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

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
        x = self.transformer.wte(input_ids)
        rope = None
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(position_ids)
        else:
            dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
            c = self.config
            freq, scale = inv_freq(c.head_dim, c.rope_theta, c.rope_scaling, c.n_positions, x.device)
            rope = cos_sin(position_ids, freq, scale, dtype)
        x = self.transformer.drop(x)
        mask = attention_bias(attention_mask, T, past, x.dtype) if (attention_mask is not None or (
            cache is not None and past > 0 and T > 1)) else None
        for block in self.transformer.h:
            x = block(x, mask, cache, rope)
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
            # (B*T, n_embd) against (B*T,): the output layer computes its own loss (fused, or int8)
            return self.lm_head.cross_entropy(h.flatten(0, 1), targets.flatten(), softcap=self.config.logit_softcap)
        return self.output_logits(h)

    def output_logits(self, h: torch.Tensor) -> torch.Tensor:
        """The output layer on hidden states (soft-capped where the model is)."""
        logits = self.lm_head(h)
        c = self.config.logit_softcap
        return logits if c is None else c * torch.tanh(logits / c)

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
