"""The engine's own start-up checks, without training: a JSON-lines server run by the engine's Python.

    <engine>/venv/bin/python tests/engine/contract_probe.py <sd-scripts dir>

Each request line is ``{"argv": [flags after flux_train_network.py], "dataset_toml": "...",
"sample_prompts": "..." or null}``; each reply line is ``{"ok": bool, "stage": "...", "error": "...",
"warnings": [...], "samples": {...}}``.

For every request it does what ``flux_train_network.py`` does before it loads a model, with the
engine's own code: ``setup_parser().parse_args``, ``verify_command_line_training_args``,
``read_config_from_file``, then ``NetworkTrainer.train``'s opening: ``verify_training_args``,
``prepare_dataset_args``, the tokenize and latent-caching strategies, the dataset config through
``ConfigSanitizer``/``BlueprintGenerator``, the dataset group (image lookup, captions, buckets),
the "No data found" and latent-cache checks, and the FLUX trainer's ``assert_extra_args``; then
``get_optimizer`` and ``get_scheduler_fix`` on one dummy parameter. Every WARNING the engine
logs on the way is returned, so a test can hold fluxlora's warnings against the engine's.

With ``sample_prompts`` (the text of the run's prompt file), the file is written where
``--sample_prompts`` points (under a temporary name with the same extension: the engine picks
the format by it) and read back with the engine's own ``train_util.load_prompts``; the reply's
``samples`` holds the prompt dicts the engine got and the sample flags as it parsed them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import traceback
from typing import Any


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _reset_strategies(strategy_base: Any) -> None:
    for cls in (
        strategy_base.TokenizeStrategy,
        strategy_base.TextEncodingStrategy,
        strategy_base.LatentsCachingStrategy,
        strategy_base.TextEncoderOutputsCachingStrategy,
    ):
        cls._strategy = None


def check(request: dict[str, Any]) -> dict[str, Any]:
    import flux_train_network
    import torch
    from library import config_util, strategy_base, train_util
    from library.config_util import BlueprintGenerator, ConfigSanitizer

    collect = _Collect()
    logging.getLogger().addHandler(collect)
    stage = "parse"
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as toml:
            toml.write(request["dataset_toml"])
        argv = [*request["argv"], "--dataset_config", toml.name]
        prompts_text = request.get("sample_prompts")
        if prompts_text is not None:
            where = argv.index("--sample_prompts") + 1
            suffix = os.path.splitext(argv[where])[1]
            with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False, encoding="utf-8") as prompts_file:
                prompts_file.write(prompts_text)
            argv[where] = prompts_file.name
        parser = flux_train_network.setup_parser()
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                args = parser.parse_args(argv)
        except SystemExit as exc:
            lines = [line for line in err.getvalue().splitlines() if line.strip()]
            return {"ok": False, "stage": stage, "error": lines[-1] if lines else f"exit {exc.code}"}
        stage = "verify"
        train_util.verify_command_line_training_args(args)
        args = train_util.read_config_from_file(args, parser)
        trainer = flux_train_network.FluxNetworkTrainer()
        train_util.verify_training_args(args)
        train_util.prepare_dataset_args(args, True)
        stage = "dataset"
        _reset_strategies(strategy_base)
        strategy_base.TokenizeStrategy.set_strategy(trainer.get_tokenize_strategy(args))
        strategy_base.LatentsCachingStrategy.set_strategy(trainer.get_latents_caching_strategy(args))
        blueprint = BlueprintGenerator(ConfigSanitizer(True, True, args.masked_loss, True)).generate(
            config_util.load_user_config(args.dataset_config), args
        )
        train_group, val_group = config_util.generate_dataset_group_by_blueprint(blueprint.dataset_group)
        if len(train_group) == 0:
            return {"ok": False, "stage": stage, "error": "No data found", "warnings": collect.messages}
        if args.cache_latents:
            assert train_group.is_latent_cacheable(), "when caching latents, color_aug and random_crop cannot be used"
        stage = "assert_extra_args"
        trainer.assert_extra_args(args, train_group, val_group)
        stage = "optimizer"
        _, _, optimizer = train_util.get_optimizer(args, trainable_params=[torch.nn.Parameter(torch.zeros(1))])
        train_util.get_scheduler_fix(args, optimizer, 1)
        samples = None
        if args.sample_prompts is not None:
            stage = "sample_prompts"
            samples = {
                "prompts": train_util.load_prompts(args.sample_prompts),
                "every_n_steps": args.sample_every_n_steps,
                "every_n_epochs": args.sample_every_n_epochs,
                "at_first": args.sample_at_first,
            }
        return {"ok": True, "stage": "done", "warnings": collect.messages, "samples": samples}
    except BaseException as exc:  # the engine's own failure is the answer, whatever it is
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return {"ok": False, "stage": stage, "error": last, "warnings": collect.messages}
    finally:
        logging.getLogger().removeHandler(collect)
        with contextlib.suppress(NameError, OSError):
            os.unlink(toml.name)
        with contextlib.suppress(NameError, OSError):
            os.unlink(prompts_file.name)


def main() -> int:
    engine_dir = sys.argv[1]
    sys.path.insert(0, engine_dir)
    os.chdir(engine_dir)
    # Replies go to the original stdout; anything the engine prints goes to stderr.
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if line.strip():
            replies.write(json.dumps(check(json.loads(line))) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
