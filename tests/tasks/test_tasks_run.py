"""Running a task: batched generation, context rule, resumable output; masking; LoRA merge."""
import json
import warnings

import pytest
import torch

from gptkit.errors import GptkitError
from gptkit.model import GPT, GPTConfig
from gptkit.tasks.data import Example
from gptkit.tasks.finetune import TaskBatches, add_lora, encode_example, make_xy, merged_copy
from gptkit.tasks.run import read_outputs, run_task
from gptkit.tasks.templates import builtin
from gptkit.tokenizer import bytes_tokenizer


@pytest.fixture(scope="module")
def tok():
    return bytes_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=tok.vocab_size, n_positions=96, n_layer=2, n_head=2, n_embd=32,
                      eos_token_id=tok.eot_id, bos_token_id=tok.eot_id))
    return m.eval()


def examples(n, long=0):
    return [Example(f"text number {i} " + "x" * (i % 7) + "y" * long, f"t{i}", f"d.jsonl:{i + 1}") for i in range(n)]


def test_run_writes_one_line_per_example_in_order(model, tok, tmp_path):
    out = tmp_path / "o.jsonl"
    s = run_task(model, tok, examples(11), builtin("summarize"), out, batch_size=4, progress=False,
                 generation={"max_new_tokens": 8})
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(11)) and s["generated"] == 11
    assert rows[3]["source"].startswith("text number 3") and rows[3]["prompt"].endswith("\nTL;DR:")
    assert rows[3]["target"] == "t3" and "\n" not in rows[3]["output"]
    # batched = one by one (ragged, left-padded batches give the same greedy outputs)
    one = run_task(model, tok, examples(11)[3:4], builtin("summarize"), tmp_path / "one.jsonl", batch_size=1,
                   progress=False, generation={"max_new_tokens": 8})
    assert one["done"] == 1 and read_outputs(tmp_path / "one.jsonl")[0]["output"] == rows[3]["output"]


def test_candidates_beams_and_sampling(model, tok, tmp_path):
    run_task(model, tok, examples(3), builtin("summarize"), tmp_path / "b.jsonl", batch_size=2, progress=False,
             generation={"max_new_tokens": 6, "num_beams": 3, "num_return_sequences": 3})
    rows = read_outputs(tmp_path / "b.jsonl")
    assert all(len(r["outputs"]) == 3 and r["output"] == r["outputs"][0] for r in rows)
    run_task(model, tok, examples(3), builtin("summarize"), tmp_path / "s.jsonl", batch_size=2, progress=False,
             generation={"max_new_tokens": 6, "do_sample": True, "num_return_sequences": 5, "seed": 1})
    assert all(len(r["outputs"]) == 5 for r in read_outputs(tmp_path / "s.jsonl"))


def test_killed_run_resumes_without_duplicates_or_losses(model, tok, tmp_path, monkeypatch):
    ex, tpl, gen = examples(13), builtin("summarize"), {"max_new_tokens": 8}
    full = tmp_path / "full.jsonl"
    run_task(model, tok, ex, tpl, full, batch_size=3, progress=False, generation=gen)
    out = tmp_path / "o.jsonl"
    import gptkit.generate as g
    real, calls = g.generate_text, {"n": 0}

    def dying(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed during the third batch
        return real(*a, **k)
    monkeypatch.setattr(g, "generate_text", dying)
    with pytest.raises(KeyboardInterrupt):
        run_task(model, tok, ex, tpl, out, batch_size=3, progress=False, generation=gen)
    monkeypatch.setattr(g, "generate_text", real)
    assert len(out.read_text().splitlines()) == 6
    with open(out, "a") as f:  # a line cut by the kill
        f.write('{"index": 12, "source": "text num')
    s = run_task(model, tok, ex, tpl, out, batch_size=3, progress=False, generation=gen)
    assert s["resumed"] == 6 and s["generated"] == 7
    assert out.read_text() == full.read_text()
    # once complete, running again does nothing
    assert run_task(model, tok, ex, tpl, out, batch_size=3, progress=False, generation=gen)["generated"] == 0
    # other settings are refused, not mixed in
    with pytest.raises(GptkitError, match="other settings"):
        run_task(model, tok, ex, tpl, out, batch_size=3, progress=False, generation={"max_new_tokens": 9})


def test_long_sources_error_or_truncate(model, tok, tmp_path):
    ex = examples(3) + [Example("long " * 40, "t", "d.jsonl:4")]
    out = tmp_path / "o.jsonl"
    with pytest.raises(GptkitError, match=r"d.jsonl:4: the prompt is \d+ tokens.*--on-long truncate"):
        run_task(model, tok, ex, builtin("summarize"), out, progress=False, generation={"max_new_tokens": 16})
    assert not out.exists()  # nothing half-written
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        run_task(model, tok, ex, builtin("summarize"), out, progress=False, on_long="truncate",
                 generation={"max_new_tokens": 16})
    assert any("1 source(s) cut" in str(x.message) for x in w)
    rows = read_outputs(out)
    assert rows[3]["truncated"] and len(tok.encode(rows[3]["prompt"])) <= 96 - 16
    assert rows[3]["prompt"].endswith("\nTL;DR:")


def test_prompt_tokens_give_zero_loss_and_zero_gradient(model, tok):
    """Targets of prompt positions are -100: changing the prompt's *targets* changes nothing, and
    the loss gradient w.r.t. the logits at prompt positions is exactly zero."""
    tpl = builtin("summarize")
    e = encode_example(Example("some source text", "a summary"), tpl, tok, 64)
    x, y = make_xy([e], tok.eot_id)
    n_prompt = e.n_prompt
    assert (y[0, :n_prompt - 1] == -100).all() and (y[0, n_prompt - 1:len(e.ids) - 1] >= 0).all()
    assert tok.decode(y[0, n_prompt - 1:len(e.ids) - 1].tolist()[:-1]) == " a summary"
    m = GPT(model.config)
    m.load_state_dict(model.state_dict())
    m.train()
    logits = m(x).float().detach().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=-100)
    loss.backward()
    assert logits.grad[0, :n_prompt - 1].abs().max() == 0
    assert logits.grad[0, n_prompt - 1:len(e.ids) - 1].abs().max() > 0
    # the model's own (fused) loss agrees, and its parameter gradients are those of a loss
    # computed on the target positions alone
    L = len(e.ids) - 1
    m.zero_grad()
    ref = m(x, targets=y)
    assert ref.item() == pytest.approx(loss.item(), rel=1e-5)
    ref.backward()
    g1 = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    torch.nn.functional.cross_entropy(m(x)[0, n_prompt - 1:L].float(), y[0, n_prompt - 1:L]).backward()
    assert all(torch.allclose(a, b.grad, atol=1e-6) for a, b in zip(g1, m.parameters()))
    # and the prompt-only loss is exactly zero: all targets masked
    y_prompt_only = torch.full_like(y, -100)
    assert m(x, targets=y_prompt_only).item() == 0.0


def test_bucketed_batches_deterministic_and_cover_epoch(tok):
    tpl = builtin("summarize")
    rows = [encode_example(Example("s" * (i % 30 + 1), "t" * (i % 5 + 1), str(i)), tpl, tok, 80) for i in range(100)]
    tb = TaskBatches(rows, "train", tok.eot_id, seed=1, rows_per_step=10)

    class RT:
        world_size, rank = 1, 0
    seen = []
    for it in range(10):
        x, y = tb.rank_batch(10, 80, 0, it, RT, 0)
        assert x.shape[1] % 8 == 0 and x.shape[1] <= 80
        seen += tb.step_rows(it, 10).tolist()
    assert sorted(seen) == list(range(100))  # one epoch = every example once
    x2, _ = TaskBatches(rows, "train", tok.eot_id, seed=1, rows_per_step=10).rank_batch(10, 80, 0, 7, RT, 0)
    assert torch.equal(x2, tb.rank_batch(10, 80, 0, 7, RT, 0)[0])
    # two ranks x 5 rows = the same global batch as one rank x 10 rows
    class R0:
        world_size, rank = 2, 0
    class R1:
        world_size, rank = 2, 1
    a, b = tb.rank_batch(5, 80, 0, 3, R0, 0), tb.rank_batch(5, 80, 0, 3, R1, 0)
    whole = tb.rank_batch(10, 80, 0, 3, RT, 0)
    assert torch.equal(torch.cat([a[1][:, :whole[1].shape[1]], b[1][:, :whole[1].shape[1]]])[:, :min(a[1].shape[1], b[1].shape[1])],
                       whole[1][:, :min(a[1].shape[1], b[1].shape[1])])


def test_lora_merge_equals_unmerged_and_loads_in_transformers(model, tok, tmp_path):
    from gptkit.hf import save_model
    base = GPT(model.config)
    base.load_state_dict(model.state_dict())
    pm = add_lora(base, r=4, alpha=8, init=False)  # random B: the adapters change the output
    x = torch.randint(0, tok.vocab_size, (2, 20))
    with torch.no_grad():
        unmerged = pm(x).float()
        plain = model(x).float()
    assert (unmerged - plain).abs().max() > 1e-3
    merged = merged_copy(pm)
    assert type(merged) is GPT
    with torch.no_grad():
        assert (merged(x).float() - unmerged).abs().max() <= 1e-5
        assert torch.equal(pm(x).float(), unmerged)  # the training model is untouched
    save_model(merged, tmp_path / "merged", tok)
    from transformers import AutoModelForCausalLM
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert (hf(x).logits - unmerged).abs().max() <= 1e-4
