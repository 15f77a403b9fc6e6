"""fluxlora: run FLUX.1 LoRA fine-tuning (kohya-ss sd-scripts) as Kubernetes GPU Jobs."""
