"""Chat: control tokens and a template for any gptkit tokenizer (tokens.py, template.py),
conversation data (data.py), supervised fine-tuning on conversations (sft.py) and a terminal
conversation (terminal.py, `gptkit chat`). Nothing heavy is imported here: the tokenizer module
imports tokens.py."""
