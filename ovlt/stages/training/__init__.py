"""The training machinery under the `sft` and `grpo` stages (`ovlt.stages.train`): the TRL arguments and trainer
bodies every process runs (`sft`, `grpo`, `common`, `callbacks`), the worker entry point (`worker`) and the launcher
that starts it in-process or through `accelerate launch` (`launch`)."""
