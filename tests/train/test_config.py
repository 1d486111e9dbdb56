"""The model's options are GPTConfig's fields, from flag to file: each is a flag with the field's help, a
config-file key and a train_config.json key under its own name; the older spellings (--mlp gelu,
--tie-embeddings) still read the same, without a warning; --resume and --init-from compare the fields."""
from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch

from gptkit.cli import build_parser
from gptkit.cli.train import train_config_from_args
from gptkit.errors import GptkitError, OptionError
from gptkit.model import GPT, GPTConfig, model_options
from gptkit.rundir import RunFiles
from gptkit.train import TrainConfig, model_config, train
from gptkit.train.resume import check_same_model

RUN = Path(__file__).resolve().parents[1] / "fixtures" / "run_v2" / "llama_gqa"  # 2 x 16, 2 heads, 1 kv head
RUN_FLAGS = ["--preset", "tiny", "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--n-positions", "32",
             "--n-kv-head", "1", "--position-embedding", "rope", "--norm", "rmsnorm", "--mlp", "swiglu", "--no-bias",
             "--no-tie-embeddings", "--rope-theta", "5000"]


def parse(*argv: str, config: Path | None = None) -> TrainConfig:
    args = build_parser().parse_args(["train", *argv, *(["--config", str(config)] if config else [])])
    return train_config_from_args(args)


def test_every_model_option_is_a_flag_with_the_fields_help():
    train = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    flags = {s: a for a in train._actions for s in a.option_strings}
    hints = TrainConfig.__dataclass_fields__
    for f in model_options():
        action = flags["--" + f.name.replace("_", "-")]
        assert action.dest == f.name and action.help.startswith(f.metadata["help"])
        assert hints[f.name].default is None  # not given: the preset's value, else GPTConfig's default
    assert {"vocab_size", "bos_token_id", "eos_token_id"}.isdisjoint(hints)  # the tokenizer's


def test_old_spellings_read_as_the_fields_without_a_warning(tmp_path):
    toml = tmp_path / "old.toml"
    toml.write_text('mlp = "swiglu"\ntie_embeddings = false\nposition_embedding = "rope"\nnorm = "rmsnorm"\n')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old_flags = parse("--mlp", "swiglu", "--no-tie-embeddings", "--position-embedding", "rope", "--norm", "rmsnorm")
        old_file = parse(config=toml)
    new = parse("--activation-function", "silu", "--gated-mlp", "--no-tie-word-embeddings", "--position-embedding",
                "rope", "--norm", "rmsnorm")
    want = model_config(new, 257, 256)
    assert want.gated_mlp and want.activation_function == "silu" and not want.tie_word_embeddings
    for cfg in (old_flags, old_file):
        cfg.validate()
        assert model_config(cfg, 257, 256) == want
    assert model_config(parse("--mlp", "gelu"), 257, 256).activation_function == "gelu_new"  # GPT-2's, as before


def test_train_config_json_reads_back_as_the_same_model():
    cfg = parse(*RUN_FLAGS, "--rope-scaling", '{"rope_type": "linear", "factor": 2.0}', "--n-inner", "48")
    back = TrainConfig.from_dict(json.loads(json.dumps(dataclasses.asdict(cfg))), "train_config.json")
    assert model_config(back, 257, 256) == model_config(cfg, 257, 256)
    assert model_config(back, 257, 256).rope_scaling == {"rope_type": "linear", "factor": 2.0}


def test_an_option_under_both_names_with_two_values_is_refused():
    with pytest.raises(GptkitError, match="tie_embeddings .* and tie_word_embeddings are both given"):
        TrainConfig.from_dict({"tie_embeddings": True, "tie_word_embeddings": False})
    with pytest.raises(OptionError, match="swiglu is activation_function 'silu'"):
        TrainConfig.from_dict({"mlp": "swiglu", "activation_function": "relu"}).validate()


@pytest.mark.parametrize("flags, option", [
    (["--n-kv-head", "2"], "n_kv_head"),
    (["--rope-theta", "10000"], "rope_theta"),
    (["--qk-norm"], "qk_norm"),
    (["--n-inner", "96"], "n_inner"),  # options gptkit train did not have before: compared all the same
    (["--layer-norm-epsilon", "1e-6"], "layer_norm_epsilon"),
    (["--qkv-bias"], "qkv_bias"),
])
def test_resume_names_any_model_option_that_changes_the_run(flags, option):
    cfg = parse(*RUN_FLAGS, *flags)
    with pytest.raises(OptionError) as e:
        check_same_model(RunFiles(RUN), model_config(cfg, 257, 256), cfg)
    assert e.value.option == option and "does not match the run" in str(e.value)


def test_resume_accepts_the_runs_model_under_any_spelling_and_says_which_flags_it_needs():
    for flags in (RUN_FLAGS, [*RUN_FLAGS, "--head-size", "8", "--n-inner", "64", "--dropout", "0.1", "--zero-init"]):
        cfg = parse(*flags)
        check_same_model(RunFiles(RUN), model_config(cfg, 257, 256), cfg)  # the same function: no error
    cfg = parse("--preset", "tiny", "--n-layer", "2", "--n-head", "2", "--n-embd", "16", "--n-positions", "32")
    with pytest.raises(GptkitError, match="trained with --n-kv-head 1 .*--position-embedding rope"):
        check_same_model(RunFiles(RUN), model_config(cfg, 257, 256), cfg)


def test_init_from_takes_the_model_and_only_dropout_changes_it(tmp_path):
    for flags in (["--n-kv-head", "1"], ["--mlp", "gelu"], ["--zero-init"], ["--rope-scaling", '{"factor": 2}']):
        with pytest.raises(OptionError, match="changes the architecture"):
            parse("--init-from", str(RUN), *flags).validate()
    cfg = parse("--init-from", str(RUN), "--dropout", "0.5")
    cfg.validate()
    model = GPT(GPTConfig(vocab_size=20, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    model.set_dropout(cfg.dropout)
    assert model.config.dropout == 0.5 and model.transformer.h[0].attn.attn_dropout == 0.5
    model.train()
    x = torch.randint(0, 20, (1, 8))
    assert not torch.equal(model(x), model(x))  # dropout is on in the layers, not only in the config


def test_resume_takes_the_model_a_recipe_run_overrode_and_records_it(tmp_path):
    """A budget recipe's run with a model flag of its own (--n-layer 1 under cpu-10min's 6) resumes
    with no model flag: the recipe's values do not count as flags given; train_config.json then
    records the run's model, so that the next --resume reads it too."""
    data = RUN.parents[1] / "old_run" / "data"
    base = dict(data=str(data), out=str(tmp_path / "run"), preset="cpu-10min", block_size=16, batch_size=2,
                eval_iters=1, eval_interval=2, tensorboard=False, progress=False, device="cpu", dtype="float32")
    train(TrainConfig.from_dict({**base, "max_iters": 2, "n_layer": 1, "n_embd": 32, "n_positions": 16}))
    for step in (3, 4):
        result = train(TrainConfig.from_dict({**base, "max_iters": step, "resume": True}))
        assert result.step == step
    ran = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert (ran["n_layer"], ran["n_embd"], ran["n_positions"], ran["n_head"]) == (1, 32, 16, 4)
    with pytest.raises(OptionError, match="2 does not match the run .* trained with --n-layer 1"):
        train(TrainConfig.from_dict({**base, "max_iters": 5, "resume": True, "n_layer": 2}))
