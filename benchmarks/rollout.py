"""Environment steps per second of eef's batched rollout engine against a sequential loop.

    python benchmarks/rollout.py [--tasks 64] [--json]
    python benchmarks/rollout.py --device cuda --model PATH_TO_0.5-1B_LLAMA   # GPU mode

Both run the same model (default: a fresh tiny eef model; an untrained model writes random
actions, so episodes run to the step limit and contexts grow as in a long real episode) on the
same tasks of the built-in shop with the same seeds and sampling. The sequential loop is ETO's
evaluation loop: one environment at a time, one model call per step, the whole conversation
re-read every call. The batched engine steps ``--num-envs`` environments together, one model
call per step, and keeps each conversation's KV cache between turns. Also printed: the
sequential loop with KV reuse, to separate the two effects. Target: ratio >= 5 on the 2-core CPU
machine. With --json the last line is one JSON object.

    python benchmarks/rollout.py --restored [--tasks 64] [--json]

EEF's workload instead: episodes restored at the states ``s_l .. s_Ml`` of the scripted expert's
failed trajectories (compact view, as the default run), so each new episode brings a long expert
prefix while the others continue with short observations. Batched engine with each call's
prefill grouped by uncached length (the default) against one padded forward for all rows.

    python benchmarks/rollout.py --workers 2 [--model CK] [--tasks 800] [--json]

The default run's exploration on the CPU: s0 rollouts of the training tasks (compact view,
temperature 0.7) shared by N forked one-thread worker processes against one process with all
threads. ``--model`` takes a trained checkpoint (the default run's ``sft_pos/checkpoint``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _common import model_arguments, model_or_tiny, print_figures


def _steps_per_s(model_dir: str, args, width: int, cache_entries: int) -> tuple[float, int]:
    from eef.agent import SamplingParams, build_prompt
    from eef.agent.hf_policy import HFPolicy
    from eef.envs import make
    from eef.rollout import RolloutConfig, Start, clone_envs, rollout

    env = make("shop")
    policy = HFPolicy.from_pretrained(
        model_dir, device=args.device, max_batch_size=width, prefix_cache_entries=cache_entries
    )
    starts = [Start(t) for t in env.task_ids("test")[: args.tasks]]
    config = RolloutConfig(SamplingParams(temperature=0.7, max_new_tokens=args.max_new_tokens), seed=0)
    result = rollout(clone_envs(env, width), policy, starts, build_prompt("shop"), config)
    return result.steps / result.seconds, result.steps


def _restored_steps_per_s(model_dir: str, args, prefill_spread: int | None) -> tuple[float, int, int]:
    from eef.agent import SamplingParams, build_prompt
    from eef.agent.hf_policy import HFPolicy
    from eef.envs import make
    from eef.experts.scripted_shop import scripted_trajectories
    from eef.methods import state_positions
    from eef.rollout import RolloutConfig, Start, clone_envs, rollout

    env = make("shop", view="compact")
    prompt = build_prompt("shop")
    failed = [t for t in scripted_trajectories(env, env.task_ids("train")[: args.tasks], prompt) if not t.success]
    starts = [Start(t.task_id, t, p) for t in failed for p in state_positions(t, 5)[1:]]
    policy = HFPolicy.from_pretrained(
        model_dir, device=args.device, max_batch_size=args.num_envs, prefill_spread=prefill_spread
    )  # the cache keeps two batches' conversations
    config = RolloutConfig(SamplingParams(temperature=0.7, max_new_tokens=args.max_new_tokens), seed=0)
    result = rollout(clone_envs(env, args.num_envs, {"view": "compact"}), policy, starts, prompt, config)
    return result.steps / result.seconds, result.steps, len(starts)


def _workers_steps_per_s(model_dir: str, args, workers: int) -> tuple[float, int]:
    from eef.agent import PromptConfig, SamplingParams, build_prompt
    from eef.agent.hf_policy import HFPolicy
    from eef.envs import make
    from eef.rollout import RolloutConfig, Start, clone_envs, rollout

    env = make("shop", view="compact")
    prompt = build_prompt("shop", PromptConfig("Buy the item the instruction describes."), env)
    policy = HFPolicy.from_pretrained(model_dir, device=args.device, max_batch_size=args.num_envs)
    starts = [Start(t) for t in env.task_ids("train")[: args.tasks]]
    config = RolloutConfig(SamplingParams(temperature=0.7, max_new_tokens=48), seed=0)
    result = rollout(clone_envs(env, args.num_envs), policy, starts, prompt, config, workers=workers)
    return result.steps / result.seconds, result.steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    model_arguments(parser)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=24, help="About one ReAct turn of the shop.")
    parser.add_argument(
        "--restored", action="store_true", help="EEF's restored expert states; prefill grouping on/off."
    )
    parser.add_argument("--workers", type=int, help="Forked one-thread workers against one process (CPU).")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = model_or_tiny(args.model, Path(tmp))
        if args.workers:
            shared, steps = _workers_steps_per_s(model_dir, args, args.workers)
            alone, _ = _workers_steps_per_s(model_dir, args, 1)
            print_figures(
                {
                    "tasks": args.tasks,
                    "steps": steps,
                    "workers": args.workers,
                    "workers_steps_per_s": round(shared, 2),
                    "one_process_steps_per_s": round(alone, 2),
                    "ratio": round(shared / alone, 2),
                },
                args.json,
            )
            return
        if args.restored:
            grouped, steps, starts = _restored_steps_per_s(model_dir, args, prefill_spread=3)
            single, _, _ = _restored_steps_per_s(model_dir, args, prefill_spread=None)
            print_figures(
                {
                    "expert_tasks": args.tasks,
                    "restored_starts": starts,
                    "steps": steps,
                    "device": args.device,
                    "grouped_prefill_steps_per_s": round(grouped, 2),
                    "one_forward_steps_per_s": round(single, 2),
                    "ratio": round(grouped / single, 2),
                },
                args.json,
            )
            return
        batched, steps = _steps_per_s(model_dir, args, args.num_envs, cache_entries=2 * args.num_envs)
        sequential, _ = _steps_per_s(model_dir, args, 1, cache_entries=0)
        sequential_cached, _ = _steps_per_s(model_dir, args, 1, cache_entries=2)
    print_figures(
        {
            "tasks": args.tasks,
            "steps": steps,
            "device": args.device,
            "batched_steps_per_s": round(batched, 2),
            "sequential_steps_per_s": round(sequential, 2),
            "sequential_kv_reuse_steps_per_s": round(sequential_cached, 2),
            "ratio": round(batched / sequential, 2),
        },
        args.json,
    )


if __name__ == "__main__":
    main()
