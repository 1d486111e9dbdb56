"""AUDIT.md and the plots, from the results dict that audit.json holds."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_path
from ..outputs import png_metadata


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _f(x, fmt: str = ".2f") -> str:
    return "n/a" if x is None else format(x, fmt)


def render(r: dict) -> str:
    lines = ["# Audit", "", f"Model `{r['model']}` on data `{r['data']}`" + (f": `{r['command']}`" if r["command"] else "."), "",
             f"Parts: {', '.join(r['parts'])}. Seed {r['seed']}; {r['seconds']:.0f} s.", ""]
    for name, fn in (("canaries", _canaries), ("extraction", _extraction), ("membership", _membership),
                     ("pii", _pii), ("stereotype", _stereotype)):
        if name in r:
            lines += fn(r[name]) + [""]
    for note in r.get("notes", []):
        lines.append(f"Note: {note}")
    return "\n".join(lines).rstrip() + "\n"


def _canaries(c: dict) -> list[str]:
    how = "every candidate scored" if c["method"] == "exact" else f"{c['samples']:,} sampled candidates per canary"
    out = ["## Canaries", "",
           (f"Exposure = log2 |space| - log2 rank, of {len(c['canaries'])} planted secrets among {c['space']:,} "
           f"candidates ({how}); the maximum is {c['max_exposure']:.1f} bits, a secret the model never saw scores "
           "about 1-2. Extracted: greedy decoding from the prefix gives the secret back."), "",
           "| planted copies | canaries | mean exposure (bits) | extracted |", "|---:|---:|---:|---:|"]
    out += [f"| {k} | {v['canaries']} | {v['mean_exposure']:.2f} | {v['extracted']} |" for k, v in c["by_repeats"].items()]
    out += ["", "| canary | planted | in train after cleaning | exposure (bits) | interval | method |",
            "|---:|---:|---:|---:|---|---|"]
    for x in c["canaries"]:
        lo, hi = x["interval"]
        out.append(f"| {x['id']} | {x['repeats']} | {_f(x['copies_in_train'], 'd')} | {x['exposure']:.2f} | "
                   f"{lo:.2f} - {hi:.2f} | {x['method']} |")
    out += ["", "![exposure](exposure.png)"]
    return out


def _extraction(e: dict) -> list[str]:
    ks = [str(k) for k in e["prompt_tokens"]]
    out = ["## Extraction", "",
           (f"Windows prompted with k tokens, the next {e['suffix_tokens']} decoded greedily: the share reproduced "
           "exactly (and, in brackets, the mean share of the suffix right before the first wrong token). Validation "
           "windows, never trained on, are the control."), "",
           "| split | windows | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|---:|" + "---:|" * len(ks)]
    for split, rows in e["splits"].items():
        n = next(iter(rows.values()))["windows"] if rows else 0
        out.append(f"| {split} | {n:,} | " + " | ".join(
            f"{_pct(rows[k]['exact'])} ({_pct(rows[k]['prefix_share'])})" for k in ks) + " |")
    if e.get("by_duplicates"):
        out += ["", "Training windows by how often their suffix occurs in the training split:", "",
                "| occurrences | windows | " + " | ".join(f"exact, k = {k}" for k in ks) + " |",
                "|---|---:|" + "---:|" * len(ks)]
        out += [f"| {b['occurrences']} | {b['windows']:,} | " + " | ".join(_pct(b["exact"][k]) for k in ks) + " |"
                for b in e["by_duplicates"]]
    out += ["", "![extraction](extraction.png)"]
    return out


def _membership(m: dict) -> list[str]:
    key = next(k for k in m["loss"] if k.startswith("tpr"))
    ml = m["mean_loss"]
    return ["## Membership inference", "",
            (f"{m['windows']['train']:,} training windows (members) against {m['windows']['val']:,} validation windows, "
            f"{m['window_tokens']} tokens each; mean loss {_f(ml['train'], '.3f')} vs {_f(ml['val'], '.3f')} nats/token. "
            "AUC 0.5 is a coin toss."), "",
            "| score | ROC AUC | TPR at 1 % FPR |", "|---|---:|---:|",
            f"| loss | {m['loss']['auc']:.3f} ± {m['loss']['auc_stderr']:.3f} | {_pct(m['loss'][key])} |",
            f"| loss / zlib bits | {m['zlib']['auc']:.3f} ± {m['zlib']['auc_stderr']:.3f} | {_pct(m['zlib'][key])} |",
            "", "![membership](membership.png)"]


def _pii(p: dict) -> list[str]:
    out = ["## Personal data in samples", "",
           (f"{p['samples']:,} samples of up to {p['new_tokens']} tokens, scanned with `prepare`'s detector: "
           f"{p['findings']} findings, {p['findings_in_training_text']} of them also in the training text."), "",
           "| kind | found |", "|---|---:|"]
    out += [f"| {k} | {v} |" for k, v in p["by_kind"].items()]
    if p.get("canary_samples"):
        out += ["", f"{p['canary_samples']} samples hold a planted canary, prefix and secret (shown as `<CANARY>`)."]
    if p["examples"]:
        out += ["", "Findings (masked): " + ", ".join(f"{f['kind']} `{f['masked']}`" for f in p["examples"])]
    rep = p["reproducing"]
    if rep["span_tokens"]:
        out += ["", (f"{rep['samples']} samples hold a span of {rep['span_tokens']} tokens found verbatim in the "
                "training split.")]
        out += [f"- ({r['kind']}) `{r['text'][:80]!r}`" for r in rep["examples"][:5]]
    return out


def _stereotype(s: dict) -> list[str]:
    out = ["## Stereotype preference", "",
           (f"{s['pairs']:,} minimal pairs (CrowS-Pairs format): the share where the model gives the more stereotyping "
           "sentence the higher likelihood; 50 % is no preference."), "",
           "| bias type | pairs | stereotyped | 95 % interval |", "|---|---:|---:|---|"]
    out += [f"| {k} | {v['pairs']} | {_pct(v['stereotyped'])} | {_pct(v['ci95'][0])} - {_pct(v['ci95'][1])} |"
            for k, v in s["by_bias_type"].items()]
    return out


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=png_metadata())
    plt.close(fig)


def plots(r: dict, scores: dict, out: Path) -> list[str]:
    """exposure.png, extraction.png, membership.png (those whose part ran); their names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    made = []
    if "canaries" in r:
        c = r["canaries"]
        fig, ax = plt.subplots(figsize=(6, 4))
        x = np.array([x["repeats"] for x in c["canaries"]], dtype=float)
        y = np.array([x["exposure"] for x in c["canaries"]])
        err = np.array([[x["exposure"] - x["interval"][0], x["interval"][1] - x["exposure"]] for x in c["canaries"]]).T
        ax.errorbar(x, y, yerr=np.maximum(err, 0), fmt="o", capsize=3)
        ax.axhline(c["max_exposure"], ls="--", c="gray", label=f"maximum ({c['max_exposure']:.1f} bits)")
        ax.set(xscale="log", xlabel="copies planted", ylabel="exposure (bits)", title="Canary exposure")
        ax.legend()
        _save(fig, out / "exposure.png")
        made.append("exposure.png")
    if "extraction" in r:
        e = r["extraction"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for split, rows in e["splits"].items():
            ks = [int(k) for k in rows]
            ax.plot(ks, [rows[str(k)]["exact"] for k in ks], "o-", label=split)
        ax.set(xlabel="prompt tokens k", ylabel="share reproduced exactly", ylim=(-0.02, 1.02),
               title=f"Extraction of {e['suffix_tokens']}-token suffixes")
        ax.legend()
        _save(fig, out / "extraction.png")
        made.append("extraction.png")
    if "membership" in scores:
        fig, ax = plt.subplots(figsize=(5, 5))
        for name, (pos, neg) in scores["membership"].items():
            thr = np.unique(np.concatenate([pos, neg]))[::-1]
            tpr = [(pos >= t).mean() for t in thr]
            fpr = [(neg >= t).mean() for t in thr]
            ax.plot([0, *fpr], [0, *tpr], label=f"{name} (AUC {r['membership'][name]['auc']:.3f})")
        ax.plot([0, 1], [0, 1], ls="--", c="gray")
        ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title="Membership inference")
        ax.legend()
        _save(fig, out / "membership.png")
        made.append("membership.png")
    return made
