"""The engine output parser: a table of real-looking lines, chunking, and arbitrary text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fluxlora_trainer.progress import (
    BarUpdate,
    CheckpointSaved,
    StageUpdate,
    StateSaving,
    StreamParser,
    format_duration,
    parse_bar,
    parse_clock,
    parse_line,
    parse_rate,
)

BAR_CASES = [
    # (segment, n, total, seconds_per_step, rate, loss, remaining)
    (
        "steps:  33%|██████▋             | 10/30 [08:04<16:08, 48.44s/it, avr_loss=0.407]",
        10,
        30,
        48.44,
        "48.44 s/it",
        0.407,
        968.0,
    ),
    ("steps:   0%|          | 0/1600 [00:00<?, ?it/s]", 0, 1600, None, None, None, None),
    (
        "steps:  50%|█████     | 800/1600 [10:00<10:00,  1.33it/s, avr_loss=0.0912]",
        800,
        1600,
        1 / 1.33,
        "1.33 it/s",
        0.0912,
        600.0,
    ),
    (
        "steps: 100%|██████████| 1600/1600 [1:02:03<00:00, 2.33s/it, avr_loss=0.12]",
        1600,
        1600,
        2.33,
        "2.33 s/it",
        0.12,
        0.0,
    ),
    (
        "steps:   6%|▌         | 6/100 [00:01<00:18, 5.12e+00it/s, avr_loss=nan]",
        6,
        100,
        1 / 5.12,
        "5.12e+00 it/s",
        None,
        18.0,
    ),
    (
        "steps:  10%|█         | 10/100 [00:01<00:09, 2.18e-03s/it, avr_loss=3.1e-1]",
        10,
        100,
        2.18e-3,
        "2.18e-03 s/it",
        0.31,
        9.0,
    ),
    (
        "steps:  20%|██        | 2/10 [00:02<00:08,  1.00s/it, Keys Scaled=0, Average key norm=0.1, avr_loss=0.5]",
        2,
        10,
        1.0,
        "1.00 s/it",
        0.5,
        8.0,
    ),
    (
        "steps:  20%|██        | 2/10 [1d, 2:00:00<3:00:00, 100.00s/it, avr_loss=0.5]",
        2,
        10,
        100.0,
        "100.00 s/it",
        0.5,
        10800.0,
    ),
]


@pytest.mark.parametrize(("segment", "n", "total", "spp", "rate", "loss", "remaining"), BAR_CASES)
def test_bar_table(
    segment: str, n: int, total: int, spp: float | None, rate: str | None, loss: float | None, remaining: float | None
) -> None:
    ev = parse_bar(segment)
    assert ev is not None
    assert (ev.n, ev.total) == (n, total)
    assert ev.rate == rate
    assert ev.loss == pytest.approx(loss) if loss is not None else ev.loss is None
    assert ev.seconds_per_step == pytest.approx(spp) if spp is not None else ev.seconds_per_step is None
    assert ev.remaining_seconds == remaining


@pytest.mark.parametrize(
    "segment",
    [
        "validation steps:  50%|█████     | 2/4 [00:01<00:01,  2.00it/s, val_avg_loss=0.3]",
        "epoch validation steps: 100%|██████████| 4/4 [00:02<00:00,  2.00it/s]",
        "100%|██████████| 4/4 [00:00<00:00, 123.45it/s]",  # caching bar
        "caching latents: 100%|██████████| 4/4 [00:00<00:00, 123.45it/s]",
        "steps:",
        "steps: garbage",
        "steps:  50%|x| 5/0 [00:01<00:01, 1.00it/s]",
        "",
    ],
)
def test_not_a_training_bar(segment: str) -> None:
    assert parse_bar(segment) is None
    assert not isinstance(parse_line(segment), BarUpdate)


@pytest.mark.parametrize(
    ("line", "event"),
    [
        (
            "saving checkpoint: /out/runs/a/checkpoints/x-step00000010.safetensors",
            CheckpointSaved("/out/runs/a/checkpoints/x-step00000010.safetensors"),
        ),
        ("saving checkpoint: /out/x.safetensors   ", CheckpointSaved("/out/x.safetensors")),
        ("2026-01-01 12:00:00 INFO     saving state at step 20      train_util.py:1234", StateSaving(20)),
        ("INFO     saving state at step 7", StateSaving(7)),
        ("removing old checkpoint: /out/x-step00000005.safetensors", None),
        ("epoch 1/3", None),
        ("model saved.", None),
    ],
)
def test_event_lines(line: str, event: object) -> None:
    assert parse_line(line) == event


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("00:00", 0.0),
        ("16:08", 968.0),
        ("1:02:03", 3723.0),
        ("2d, 1:00:00", 176400.0),
        ("?", None),
        ("x", None),
    ],
)
def test_clock(text: str, seconds: float | None) -> None:
    assert parse_clock(text) == seconds


def test_rate_units() -> None:
    assert parse_rate("48.44s/it") == (48.44, "48.44 s/it")
    spp, rate = parse_rate(" 2.00it/s")
    assert spp == pytest.approx(0.5) and rate == "2.00 it/s"
    assert parse_rate("?it/s") == (None, None)
    assert parse_rate("0.00it/s") == (None, None)


def test_stream_chunks_any_split() -> None:
    text = (
        "\r 25%|██▌       | 1/4 [00:00<00:00, 9.0it/s]\n"
        "\rsteps:   0%|          | 0/30 [00:00<?, ?it/s]"
        "\rsteps:   3%|▎         | 1/30 [00:02<01:00,  2.00s/it, avr_loss=0.5]"
        "\nsaving checkpoint: /o/a-step00000001.safetensors\n"
        "INFO saving state at step 1\n"
        "\rsteps:   7%|▋         | 2/30 [00:03<00:42,  1.50it/s, avr_loss=0.45]"
    )
    whole = StreamParser()
    expected = whole.feed(text) + whole.flush()
    assert [type(e).__name__ for e in expected] == [
        "StageUpdate",  # Training
        "BarUpdate",
        "BarUpdate",
        "StageUpdate",  # Saving
        "CheckpointSaved",
        "StateSaving",
        "StageUpdate",  # Training again
        "BarUpdate",
    ]
    for size in (1, 2, 3, 7, 64):
        p = StreamParser()
        got = []
        for i in range(0, len(text), size):
            got += p.feed(text[i : i + size])
        got += p.flush()
        assert got == expected, size


def test_format_duration() -> None:
    assert format_duration(968) == "16m08s"
    assert format_duration(45.4) == "45s"
    assert format_duration(7389) == "2h03m09s"
    assert format_duration(-3) == "0s"


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400), st.integers(min_value=1, max_value=50))
def test_parser_never_crashes(text: str, chunk: int) -> None:
    p = StreamParser()
    for i in range(0, len(text), chunk):
        for ev in p.feed(text[i : i + chunk]):
            assert isinstance(ev, BarUpdate | CheckpointSaved | StateSaving | StageUpdate)
    p.flush()


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="steps:0123456789%|█▌ /[]<>,.?itsavr_loe=+-eEnad\r\n", max_size=200),
)
def test_parser_never_crashes_on_bar_like_text(text: str) -> None:
    for ev in StreamParser().feed("steps: " + text):
        if isinstance(ev, BarUpdate):
            assert ev.total > 0 and ev.n >= 0
            assert ev.seconds_per_step is None or ev.seconds_per_step > 0


@given(st.integers(0, 10**6), st.integers(1, 10**6), st.floats(0.001, 10**4), st.floats(0, 100))
def test_roundtrip_generated_bars(n: int, total: int, spp: float, loss: float) -> None:
    rate = f"{spp:5.2f}s/it" if spp >= 1 else f"{1 / spp:5.2f}it/s"
    seg = f"steps:  10%|█         | {n}/{total} [00:01<00:09, {rate}, avr_loss={loss:.4g}]"
    ev = parse_bar(seg)
    assert ev is not None and ev.n == n and ev.total == total
    assert ev.loss == pytest.approx(float(f"{loss:.4g}"))


# The real engine's output (pinned commit, CPU, float32): the tiny FLUX, 2 images, 4 steps, a
# checkpoint every 2, two sample prompts at the start and at every checkpoint. Paths shortened.
ENGINE_OUTPUT = Path(__file__).parent / "data"


def stages_of(text: str, chunk: int) -> list[tuple[str, int | None, int | None]]:
    parser = StreamParser()
    events = []
    for i in range(0, len(text), chunk):
        events += parser.feed(text[i : i + chunk])
    events += parser.flush()
    return [(e.stage, e.done, e.total) for e in events if isinstance(e, StageUpdate)]


@pytest.mark.parametrize("chunk", [1, 97, 65536])
def test_stages_of_a_real_engine_run(chunk: int) -> None:
    stderr = (ENGINE_OUTPUT / "engine-stderr-fp32-samples.txt").read_text(encoding="utf-8")
    sampling = [("Sampling", 0, None), ("Sampling", 1, None), ("Sampling", 2, None)]
    assert stages_of(stderr, chunk) == [
        ("Preparing dataset", None, None),
        ("Loading model", None, None),
        ("Caching latents", None, None),
        ("Caching latents", 0, 2),
        ("Caching latents", 1, 2),
        ("Caching latents", 2, 2),
        ("Caching text encoder outputs", None, None),
        ("Encoding prompts", 1, None),  # each prompt and the empty negative prompt
        ("Encoding prompts", 2, None),
        ("Encoding prompts", 3, None),
        *sampling,  # before the first step
        ("Training", None, None),
        *sampling,  # at step 2
        ("Saving", None, None),
        ("Training", None, None),
        *sampling,  # at step 4, the end: the bar's last redraws are no more training
        ("Saving", None, None),
    ]
    stdout = (ENGINE_OUTPUT / "engine-stdout-fp32-samples.txt").read_text(encoding="utf-8")
    assert stages_of(stdout, chunk) == [("Saving", None, None)]  # `saving checkpoint:` is printed


def test_a_wrapped_log_record_is_read_whole() -> None:
    """rich wraps a record at 80 columns: the words that name the stage may be on its second line."""
    text = (
        "2026-12-03 04:29:26 INFO     cache Text Encoder        flux_train_network.py:267\n"
        "                             outputs for prompt: a photo\n"
        "                             of ohwx woman\n"
        "                    INFO     cache Text Encoder        flux_train_network.py:267\n"
        "                             outputs for prompt:\n"
    )
    assert stages_of(text, 5) == [("Encoding prompts", 1, None), ("Encoding prompts", 2, None)]
