"""The training stages, one file each: `sft` and `grpo` (the stage function, then the body every process runs), over
the machinery they share: the TRL arguments, resume and result (`common`), the callbacks (`callbacks`), GRPO's
colocated vLLM (`colocate`), the worker entry point (`worker`) and the launcher that starts it in-process or through
`accelerate launch` (`launch`)."""
