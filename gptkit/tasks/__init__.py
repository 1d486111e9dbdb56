"""Tasks: summarization and translation with a GPT — prompt it, fine-tune it, score it.

    data.py       task examples from JSONL / CSV / TSV / Parquet; deterministic train/val/test split
    templates.py  prompt templates (documented format strings; built-in summarize and translate)
    run.py        batched, resumable generation over a file of examples
    score.py      ROUGE, BLEU, chrF, exact match; paired bootstrap; baselines
    finetune.py   supervised fine-tuning (prompt tokens masked), LoRA, through gptkit's trainer
"""
