"""Training stages over TRL: `sft(cfg, run, iteration)` and `grpo(cfg, run, iteration)`, in-process or on many
processes through `accelerate launch` (see `ovlt.training.launch`)."""

from ovlt.training.callbacks import JsonlLogger, ZeroRewardError, ZeroRewardGuard
from ovlt.training.grpo import grpo, grpo_args, reward_weights
from ovlt.training.launch import LaunchError, accelerate_command
from ovlt.training.sft import sft, sft_args

__all__ = [
    "JsonlLogger",
    "LaunchError",
    "ZeroRewardError",
    "ZeroRewardGuard",
    "accelerate_command",
    "grpo",
    "grpo_args",
    "reward_weights",
    "sft",
    "sft_args",
]
