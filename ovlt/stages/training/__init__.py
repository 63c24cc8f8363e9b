"""The training stages, one file each: `sft` and `grpo` (the stage function, then the body every process runs), over
the machinery they share: the TRL arguments, resume and result (`common`), the callbacks (`callbacks`), GRPO's
colocated vLLM (`colocate`), the launcher that runs a stage's body in this process or through `accelerate launch`
(`launch`), and the entry point of every launched process (`worker`)."""
