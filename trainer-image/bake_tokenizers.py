"""Build step of the trainer image: save the CLIP-L and T5 tokenizers for `--tokenizer_cache_dir`.

sd-scripts (library/strategy_base.py, TokenizeStrategy._load_tokenizer) looks for
`<tokenizer_cache_dir>/<model id with "/" replaced by "_">` and loads it with from_pretrained;
library/strategy_flux.py uses CLIPTokenizer for "openai/clip-vit-large-patch14" and
T5TokenizerFast for "google/t5-v1_1-xxl". Run at build time only (it needs the hub).
"""

from __future__ import annotations

import os
import sys

TOKENIZERS = (
    ("CLIPTokenizer", "openai/clip-vit-large-patch14", "CLIP_L_REVISION"),
    ("T5TokenizerFast", "google/t5-v1_1-xxl", "T5_XXL_REVISION"),
)


def main(target: str) -> int:
    import transformers  # only in the image

    for cls_name, model_id, rev_env in TOKENIZERS:
        cls = getattr(transformers, cls_name)
        revision = os.environ.get(rev_env) or "main"
        out = os.path.join(target, model_id.replace("/", "_"))
        tok = cls.from_pretrained(model_id, revision=revision)
        tok.save_pretrained(out)
        # prove it loads from the directory alone
        cls.from_pretrained(out, local_files_only=True)
        print(f"{model_id}@{revision} -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/opt/fluxlora/tokenizers"))
