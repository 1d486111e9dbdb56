"""Fine-tuning through the trainer: learns, keeps the best, stops early, resumes exactly, LoRA +
merge loads in transformers with the same logits; the CLI end to end on a tiny model."""
import json
import subprocess
import sys

import pytest
import torch

from gptkit.errors import GptkitError
from gptkit.tasks.finetune import finetune
from gptkit.tasks.templates import builtin
from gptkit.tokenizer import bytes_tokenizer
from gptkit.train import TrainConfig

from conftest import save_tiny_bytes_gpt

WORDS = "red green blue black white gray pink brown cyan lime".split()


def make_pairs(path, n=240):
    rows = []
    for i in range(n):
        src = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)) + f" {i}"
        rows.append({"source": src, "target": src.split()[0]})  # "summary": the first word
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return save_tiny_bytes_gpt(tmp_path_factory.mktemp("base") / "model")


def cfg(base_dir, data, out, **kw):
    base = dict(data=str(data), out=str(out), init_from=str(base_dir), block_size=64, batch_size=8, max_iters=30,
                lr=3e-3, warmup_iters=2, eval_interval=10, eval_iters=4, log_interval=10, dtype="float32",
                progress=False)
    return TrainConfig(**{**base, **kw})


def test_finetune_learns_keeps_best_and_writes_metrics(base_dir, tmp_path):
    data = make_pairs(tmp_path / "p.jsonl")
    r = finetune(cfg(base_dir, data, tmp_path / "ft", max_iters=60), template=builtin("summarize"), task="summarize",
                 score_examples=16, score_max_new_tokens=6)
    rows = [json.loads(line) for line in (tmp_path / "ft" / "metrics.jsonl").read_text().splitlines()]
    evals = [x for x in rows if x["kind"] == "eval"]
    assert len(evals) == 6 and all("val_rougeL" in x for x in evals)
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    best = json.loads((tmp_path / "ft" / "best" / "best.json").read_text())
    assert best["rougeL"] == max(x["val_rougeL"] for x in evals) == r.best["score"]
    assert (tmp_path / "ft" / "best" / "model.safetensors").is_file()
    from gptkit import load_model
    load_model(tmp_path / "ft" / "best")  # a loadable model directory


def test_early_stopping(base_dir, tmp_path):
    data = make_pairs(tmp_path / "p.jsonl")
    r = finetune(cfg(base_dir, data, tmp_path / "ft", max_iters=200, lr=1e-9, warmup_iters=0),
                 template=builtin("summarize"), task="summarize", patience=2, score_examples=8, score_max_new_tokens=4)
    assert r.train.stopped_by == "early_stopping" and r.train.step == 30


def test_resume_continues_exactly(base_dir, tmp_path):
    data = make_pairs(tmp_path / "p.jsonl")
    tpl = builtin("summarize")
    full = finetune(cfg(base_dir, data, tmp_path / "full", max_iters=20), template=tpl, task="summarize",
                    score_examples=4, score_max_new_tokens=2)
    finetune(cfg(base_dir, data, tmp_path / "part", max_iters=10, lr_decay_iters=20), template=tpl, task="summarize",
             score_examples=4, score_max_new_tokens=2)
    part = finetune(cfg(base_dir, data, tmp_path / "part", max_iters=20, resume=True), template=tpl,
                    task="summarize", score_examples=4, score_max_new_tokens=2)
    assert part.train.val["loss"] == pytest.approx(full.train.val["loss"], rel=1e-5)
    from safetensors.torch import load_file
    a, b = load_file(tmp_path / "full" / "model.safetensors"), load_file(tmp_path / "part" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lora_merge_loads_in_transformers_with_same_logits(base_dir, tmp_path):
    import peft
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from gptkit import load_model
    data = make_pairs(tmp_path / "p.jsonl")
    r = finetune(cfg(base_dir, data, tmp_path / "lora", max_iters=20), template=builtin("summarize"),
                 task="summarize", lora=True, lora_r=4, merge=True, score_examples=4, score_max_new_tokens=2)
    assert r.merged is not None and not list(r.merged.glob("adapter_*"))
    best = tmp_path / "lora" / "best"
    cfg_json = json.loads((best / "adapter_config.json").read_text())
    assert cfg_json["r"] == 4 and cfg_json["base_model_name_or_path"] == str(base_dir)
    # un-merged: the base model with the saved adapters, through peft
    base = load_model(base_dir)
    pm = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=16.0, target_modules=["c_attn", "c_proj", "c_fc"]))
    peft.set_peft_model_state_dict(pm, load_file(best / "adapter_model.safetensors"))
    x = torch.randint(0, 257, (2, 24))
    with torch.no_grad():
        unmerged = pm(x).float()
        hf = AutoModelForCausalLM.from_pretrained(r.merged).eval()
        assert (hf(x).logits - unmerged).abs().max() <= 1e-5
        assert (load_model(r.merged)(x).float() - unmerged).abs().max() <= 1e-5
    # the adapters did change the model
    with torch.no_grad():
        assert (load_model(base_dir)(x).float() - unmerged).abs().max() > 1e-4


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gptkit", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_end_to_end_and_bad_input(base_dir, tmp_path):
    data = make_pairs(tmp_path / "p.jsonl", n=120)
    p = run_cli("finetune", "--task", "summarize", "--data", str(data), "--init-from", str(base_dir), "--out",
                str(tmp_path / "ft"), "--block-size", "64", "--batch-size", "8", "--max-iters", "10",
                "--eval-interval", "5", "--score-examples", "4", "--score-max-new-tokens", "3", "--no-progress",
                "--dtype", "float32", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "best val rougeL" in p.stdout
    out = tmp_path / "o.jsonl"
    p = run_cli("summarize", "--model", str(tmp_path / "ft" / "best"), "--data", str(data), "--split", "test",
                "--out", str(out), "--max-new-tokens", "4", "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    n = len(out.read_text().splitlines())
    assert n > 0
    p = run_cli("score", str(out), "--task", "summarize", "--baselines", "--bootstrap", "50", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "copy-source" in p.stdout and "lead-10" in p.stdout and "rouge signature" in p.stdout
    p = run_cli("summarize", "--model", str(tmp_path / "ft" / "best"), "The quick brown fox", "--max-new-tokens", "3",
                "-n", "2", "--seed", "0", cwd=tmp_path)
    assert p.returncode == 0 and len(p.stdout.strip().splitlines()) == 2, p.stderr
    bad = tmp_path / "bad.jsonl"
    for line, msg in [('{"source": "a", "target": ""}', "empty target"), ("not json", "not a JSON object"),
                      ('{"source": "a"}', "no field 'target'")]:
        bad.write_text(json.dumps({"source": "x", "target": "y"}) + "\n" + line + "\n")
        p = run_cli("finetune", "--task", "summarize", "--data", str(bad), "--init-from", str(base_dir), "--out",
                    str(tmp_path / "never"), cwd=tmp_path)
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and msg in p.stderr and "bad.jsonl:2" in p.stderr
        assert not (tmp_path / "never").exists()
    tpl = tmp_path / "t.txt"
    tpl.write_text("Summarize:\nTL;DR:\n")
    p = run_cli("summarize", "--model", str(base_dir), "--template", str(tpl), "hello", cwd=tmp_path)
    assert p.returncode == 2 and "no {source} placeholder" in p.stderr and p.stderr.count("\n") == 1
    p = run_cli("summarize", "--model", str(base_dir), "word " * 200, "--max-new-tokens", "8", cwd=tmp_path)
    assert p.returncode == 2 and "--on-long truncate" in p.stderr and p.stderr.count("\n") == 1
    p = run_cli("summarize", "--model", str(base_dir), "word " * 200, "--max-new-tokens", "8", "--on-long", "truncate",
                cwd=tmp_path)
    assert p.returncode == 0 and "cut to fit" in p.stderr


def test_api_errors(base_dir, tmp_path):
    data = make_pairs(tmp_path / "p.jsonl", n=20)
    with pytest.raises(GptkitError, match="--merge"):
        finetune(cfg(base_dir, data, tmp_path / "x"), template=builtin("summarize"), merge=True)
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({"source": f"{i} " + "w " * 100, "target": "t"}) + "\n" for i in range(40)))
    with pytest.raises(GptkitError, match="--on-long truncate"):
        finetune(cfg(base_dir, long, tmp_path / "y"), template=builtin("summarize"))
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_any_hf_gpt2_directory_works_unchanged(tmp_path):
    """A GPT-2 directory written by transformers itself (as `gpt2` from the Hub would be):
    GPT-2's five-candidate summarize example runs on it, and so does fine-tuning from it."""
    from transformers import GPT2Config, GPT2LMHeadModel
    tok = bytes_tokenizer()
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=tok.vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                    bos_token_id=tok.eot_id, eos_token_id=tok.eot_id))
    d = tmp_path / "hf-gpt2"
    hf.save_pretrained(d)
    tok.save(d)
    p = run_cli("summarize", "--model", str(d), "The quick brown fox jumps over the lazy dog.", "-n", "5",
                "--do-sample", "--top-k", "2", "--max-new-tokens", "10", "--seed", "0", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert len(p.stdout.splitlines()) == 5 and p.stdout.startswith("[1] ")
    data = make_pairs(tmp_path / "p.jsonl", n=60)
    p = run_cli("finetune", "--task", "summarize", "--data", str(data), "--init-from", str(d), "--out",
                str(tmp_path / "ft"), "--block-size", "64", "--batch-size", "4", "--max-iters", "4",
                "--eval-interval", "4", "--score-examples", "2", "--score-max-new-tokens", "2", "--no-progress",
                cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "ft" / "best" / "model.safetensors").is_file()


@pytest.mark.slow
def test_finetune_under_torchrun_ddp(base_dir, tmp_path):
    """The trainer's torchrun path with task batches: 2 ranks, each its rows of the global batch."""
    import os
    from pathlib import Path
    data = make_pairs(tmp_path / "p.jsonl", n=80)
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "gptkit", "finetune", "--task", "summarize", "--data", str(data), "--init-from",
                        str(base_dir), "--out", str(tmp_path / "ddp"), "--block-size", "64", "--batch-size", "4",
                        "--max-iters", "6", "--eval-interval", "3", "--score-examples", "4",
                        "--score-max-new-tokens", "2", "--no-progress", "--dtype", "float32"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [3, 6]
    assert all("val_rougeL" in r for r in rows if r["kind"] == "eval")
    assert (tmp_path / "ddp" / "best" / "model.safetensors").is_file()
    assert p.stdout.count("fine-tuned 6 steps") == 1  # rank 0 reports, once


@pytest.mark.slow
def test_sigkilled_task_run_continues_without_duplicates_or_losses(base_dir, tmp_path):
    import os
    import signal
    import time
    data = make_pairs(tmp_path / "p.jsonl", n=150)
    args = ["summarize", "--model", str(base_dir), "--data", str(data), "--batch-size", "1", "--max-new-tokens", "12",
            "--no-progress"]
    assert run_cli(*args, "--out", str(tmp_path / "full.jsonl"), cwd=tmp_path).returncode == 0
    out = tmp_path / "o.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "gptkit", *args, "--out", str(out)], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and (not out.exists() or out.read_text().count("\n") < 20):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_before = out.read_text().count("\n")
    assert 20 <= n_before < 150
    p = run_cli(*args, "--out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"{150 - n_before} generated now" in p.stderr or "generated now" in p.stderr
    assert out.read_text() == (tmp_path / "full.jsonl").read_text()
