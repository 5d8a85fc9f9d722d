"""Making and measuring fine-tuned models: LoRA fine-tuning (``finetune``), the project's instruction data
(``instruct_data``), the tiny test model (``tiny``) and forgetting cross-entropy (``forgetting``)."""
