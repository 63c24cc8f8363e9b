"""The embedded default's speed levers, each measured side by side with the setting it would replace (issue 35).

    python benchmarks/levers.py sft  [--steps N] [--run RUN]  # SFT-1: 1 process x 2 threads, torch_compile, 2 x 1 thread
    python benchmarks/levers.py grpo [--steps N] [--run RUN]  # GRPO-1 from SFT-1: as configured, torch_compile
    python benchmarks/levers.py select_hard [--run RUN]       # SFT-1's difficulty sampling: 1 engine x 2 threads, 2 x 1
    python benchmarks/levers.py evaluate [--run RUN]          # SFT-1's evaluation (greedy and sampled), the same two
    python benchmarks/levers.py generation [--run RUN]        # SFT-1's greedy generation: dynamic cache, compiled static
    python benchmarks/levers.py notebook [--steps N] [--run RUN]  # SFT-1 in process against in the study's notebook

RUN (default runs/levers) holds what the measured stage consumes; the study's own stages make what it lacks. Each
variant runs the stage on its own copy of RUN and prints seconds per optimizer step (training: the median of the
logged windows after the first, so that a compile shows in the first window, printed too) and the stage's whole wall
time. Run it on quiet cores: the figures are wall-clock seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ovlt.scoring.benchmarks import read_jsonl  # noqa: E402

# Settings as `ovlt --set` pairs (`ovlt.ground.config.overrides_from`); a later pair for the same key wins.
SFT_VARIANTS = {
    "1 process x 2 threads (as configured)": [],
    "torch_compile": ["sft.torch_compile=true"],
    "2 processes x 1 thread": ["sft.launch.num_processes=2", "sft.per_device_train_batch_size=8"],
}
GRPO_VARIANTS = {
    "as configured": [],
    "torch_compile": ["grpo.torch_compile=true"],
}
GENERATION_VARIANTS = {
    "1 engine x 2 threads (as configured)": [],
    "2 engines x 1 thread": ["models.student.data_parallel_size=2"],
}
SFT_STEPS = ["sft.max_steps=150", "sft.logging_steps=25"]
# lever: (the stage measured, its folder in the run, variants, settings every variant shares)
LEVERS = {
    "sft": ("iter1/sft", "iter1/sft", SFT_VARIANTS, SFT_STEPS),
    "grpo": ("iter1/grpo", "iter1/grpo", GRPO_VARIANTS, ["grpo.max_steps=20", "grpo.logging_steps=5"]),
    "select_hard": ("iter1/select_hard", "iter1/select_hard", GENERATION_VARIANTS, []),
    "evaluate": ("evaluate sft-1", "eval/sft-1", GENERATION_VARIANTS, []),
}


def tiny_config(settings: list[str]):
    from ovlt.ground.config import load_config, overrides_from

    return load_config(REPO / "configs/tiny.yaml", overrides=overrides_from(settings))


def prepare(run_dir: Path, upto: str, settings: list[str]):
    """Run the study's stages (its own functions) into `run_dir` up to, not including, `upto`."""
    from ovlt.ground.artifacts import Run
    from ovlt.stages.registry import run_stage
    from ovlt.study.order import stage_order

    cfg = tiny_config(settings)
    run = Run(run_dir)
    for ref in stage_order(cfg):
        if ref.label == upto:
            return cfg, run, ref
        if ref.checkpoint is None:  # the evaluations are not needed upstream of training
            run_stage(cfg, run, ref.name, ref.key)
    raise KeyError(upto)


def step_seconds(stage_dir: Path) -> tuple[float, float]:
    """(first logged window's seconds per step, the median of the later windows')."""
    windows = [row["step_seconds"] for _, row in read_jsonl(stage_dir / "log.jsonl") if "step_seconds" in row]
    if len(windows) < 2:
        raise SystemExit(f"{stage_dir}: {len(windows)} logged window(s); run more steps than one logging window")
    return windows[0], statistics.median(windows[1:])


def copy_upstream(base_run: Path, copy: Path, measured: Path) -> None:
    """A copy of the run folder without the measured stage's own folder, the evaluations and the notebooks, and, for a
    stage of iteration i, without the folders of the iterations after i: the variant redoes the measured stage on
    what it consumes. Later stages of the same iteration are copied; nothing here runs them."""
    skip = {base_run / "eval", base_run / "notebooks", measured}
    if measured.parent.name.startswith("iter"):
        skip |= {folder for folder in base_run.glob("iter*") if int(folder.name[4:]) > int(measured.parent.name[4:])}
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(base_run, copy, ignore=lambda folder, names: [n for n in names if Path(folder) / n in skip])


def measure(base_run: Path, label: str, folder: str, variants: dict, shared: list[str]) -> None:
    """Each variant runs the stage `label` (stage folder `folder`) on its own copy of `base_run`; the upstream stages
    are the base run's, as the study config made them (a variant's own keys may reach their fingerprints)."""
    from ovlt.stages.registry import run_stage

    print(f"{label}: {'variant':<40}{'s/step':>9}{'first window':>14}{'stage wall s':>14}", flush=True)
    for k, (name, extra) in enumerate(variants.items()):
        copy = base_run.parent / f"{base_run.name}-variant{k}"
        copy_upstream(base_run, copy, base_run / folder)
        _, run, ref = prepare(copy, label, shared)
        cfg = tiny_config(shared + extra)
        began = time.perf_counter()
        run_stage(cfg, run, ref.name, ref.key)
        wall = time.perf_counter() - began
        stage_dir = run.root / folder
        first, later = step_seconds(stage_dir) if (stage_dir / "log.jsonl").is_file() else (float("nan"),) * 2
        print(f"{label}: {name:<40}{later:>9.3f}{first:>14.3f}{wall:>14.1f}", flush=True)


def generation_compile(base_run: Path, prompts: int = 128) -> None:
    """Greedy generation of SFT-1 on the first `prompts` held-out problems, as evaluation prompts them: transformers'
    dynamic cache (as configured) against its compiled route (a static cache, which `generate` compiles the forward
    for; on a CPU only when the compile config asks for all devices). Twice each: the first call holds the compile."""
    import dataclasses

    from transformers import CompileConfig

    from ovlt.engines.generation import SamplingParams, TransformersBackend
    from ovlt.ground.artifacts import Run
    from ovlt.ground.layout import checkpoint_path
    from ovlt.stages.evaluation import _prompts, benchmark_records

    cfg = tiny_config([])
    run = Run(base_run)
    ref = cfg.evaluation.benchmarks[0]
    chats, images = _prompts(ref, benchmark_records(ref, run)[:prompts])
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.evaluation.sampling.max_new_tokens)
    backend = TransformersBackend(checkpoint_path(cfg, run, "sft-1"), batch_size=cfg.models.student.batch_size,
                                  show_progress=False)
    config = backend.model.generation_config
    compiled = CompileConfig()
    compiled._compile_all_devices = True  # transformers' own switch (a class attribute) for compiling off the GPU
    texts = {}
    print(f"generation: {'variant':<40}{'first call s':>14}{'second call s':>15}", flush=True)
    for name, settings in (("dynamic cache (as configured)", {}),
                           ("static cache, compiled", {"cache_implementation": "static",
                                                       "compile_config": compiled})):
        for key, value in settings.items():
            setattr(config, key, value)
        seconds = []
        for _ in range(2):
            began = time.perf_counter()
            out = backend.generate(chats, images, dataclasses.replace(params))
            seconds.append(time.perf_counter() - began)
        texts[name] = [c[0].text for c in out]
        print(f"generation: {name:<40}{seconds[0]:>14.1f}{seconds[1]:>15.1f}", flush=True)
    first, second = texts.values()
    print(f"generation: responses that differ between the two: {sum(a != b for a, b in zip(first, second, strict=True))} of "
          f"{len(first)}")


def notebook_overhead(base_run: Path, steps: int = 150) -> None:
    """SFT-1 for `steps` steps in this process, then through the study's own notebook execution (papermill, a kernel,
    the live-progress file, the log and kernel output the study routes): as configured, and with the trainer's
    progress bar off (`disable_tqdm`, TRL's field), to see what the notebook path costs a training step."""
    import yaml

    from ovlt.ground.config import overrides_from
    from ovlt.stages.registry import run_stage
    from ovlt.stages.training.progress import PROGRESS_ENV
    from ovlt.study.notebooks import NOTEBOOK_DIR, PROGRESS_FILE, execute

    print(f"iter1/sft: {'path':<40}{'s/step':>9}{'first window':>14}{'wall s':>10}", flush=True)
    paths = (("in process", [], False), ("notebook (as the study runs it)", [], True),
             ("notebook, disable_tqdm", ["sft.disable_tqdm=true"], True))
    for k, (name, extra, in_kernel) in enumerate(paths):
        copy = base_run.parent / f"{base_run.name}-path{k}"
        copy_upstream(base_run, copy, base_run / "iter1/sft")
        settings = [*SFT_STEPS, f"sft.max_steps={steps}", *extra]
        cfg, run, ref = prepare(copy, "iter1/sft", settings)
        began = time.perf_counter()
        if in_kernel:
            config = copy / "levers.yaml"
            config.write_text(yaml.safe_dump({"extends": str(REPO / "configs/tiny.yaml"), **overrides_from(settings)}))
            saved = os.environ.get(PROGRESS_ENV)
            os.environ[PROGRESS_ENV] = str(run.notebooks_dir / PROGRESS_FILE)
            run.notebooks_dir.mkdir(parents=True, exist_ok=True)
            try:
                execute(NOTEBOOK_DIR / "04_sft.ipynb", run.notebooks_dir / "04_sft_iter1.ipynb",
                        {"config": str(config), "run_dir": str(run.root), "iteration": 1, "checkpoint": ""},
                        "iter1/sft", log_path=run.root / "study.log")
            finally:
                if saved is None:
                    os.environ.pop(PROGRESS_ENV)
                else:
                    os.environ[PROGRESS_ENV] = saved
        else:
            run_stage(cfg, run, ref.name, ref.key)
        first, later = step_seconds(run.root / "iter1/sft")
        print(f"iter1/sft: {name:<40}{later:>9.3f}{first:>14.3f}{time.perf_counter() - began:>10.1f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("lever", choices=(*LEVERS, "generation", "notebook"))
    parser.add_argument("--run", default=str(REPO / "runs/levers"))
    parser.add_argument("--steps", type=int, help="training steps per variant (sft and notebook: 150, grpo: 20)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    base_run = Path(args.run)
    if args.steps and args.lever not in ("sft", "grpo", "notebook"):
        parser.error(f"--steps is for the training levers; {args.lever} samples")
    # The base run holds what the measured stage consumes, made once by the study's own stages.
    if args.lever == "generation":
        prepare(base_run, "evaluate sft-1", [])
        generation_compile(base_run)
        return
    if args.lever == "notebook":
        prepare(base_run, "iter1/sft", [])
        notebook_overhead(base_run, args.steps or 150)
        return
    label, folder, variants, shared = LEVERS[args.lever]
    if args.steps:
        shared = [*shared, f"{args.lever}.max_steps={args.steps}"]
    prepare(base_run, label, [])
    measure(base_run, label, folder, variants, shared)


if __name__ == "__main__":
    main()
