"""Expert files written from the documented schemas of ETO, AgentGym and the EEF set."""

import json

from eef.agent import PromptConfig, build_prompt
from eef.experts.scripted_shop import scripted_trajectory

ETO_INSTRUCTION = "You are web shopping.\nI will give you instructions about what to do.\n..."


def scripted_runs(env, count=8):
    """Scripted expert episodes of the first training tasks of the shop: successes and failures."""
    prompt = build_prompt("shop", PromptConfig(), env)
    runs = [scripted_trajectory(env, t, prompt) for t in env.task_ids("train")[:count]]
    assert any(r.success for r in runs) and not all(r.success for r in runs)
    return runs


def session_of(task_id: str) -> int:
    return int(task_id.rsplit("_", 1)[1])


def eto_record(run, *, record_id=None, prefix="Observation:\n"):
    """ETO's SFT record: instruction -> OK handshake, observations labelled, no final observation."""
    conversations = [
        {"from": "human", "value": ETO_INSTRUCTION},
        {"from": "gpt", "value": "OK"},
        {"from": "human", "value": prefix + run.first_observation},
    ]
    for i, turn in enumerate(run.turns):
        conversations.append({"from": "gpt", "value": turn.text})
        if i + 1 < len(run.turns):
            conversations.append({"from": "human", "value": prefix + turn.observation})
    return {
        "id": session_of(run.task_id) if record_id is None else record_id,
        "conversations": conversations,
        "reward": run.reward,
        "source": "gpt4",
    }


def agentgym_record(run, item_id=None):
    """AgentGym's AgentTraj record: per-message loss flags, ``{env}_{index}`` item id, no reward."""
    conversations = [
        {"from": "human", "loss": None, "value": ETO_INSTRUCTION},
        {"from": "gpt", "loss": False, "value": "Ok."},
        {"from": "human", "loss": None, "value": run.first_observation},
    ]
    for i, turn in enumerate(run.turns):
        conversations.append({"from": "gpt", "loss": True, "value": turn.text})
        if i + 1 < len(run.turns):
            conversations.append({"from": "human", "loss": None, "value": turn.observation})
    return {"item_id": item_id or run.task_id, "conversations": conversations}


def eef_expert_record(run, record_id=None, model="gpt-4-0613"):
    """A record of the EEF authors' set: role/content messages and an info block."""
    conversations = [{"role": "user", "content": run.first_observation}]
    for i, turn in enumerate(run.turns):
        conversations.append({"role": "assistant", "content": turn.text})
        if i + 1 < len(run.turns):
            conversations.append({"role": "user", "content": f"Observation: {turn.observation}"})
    return {
        "id": session_of(run.task_id) if record_id is None else record_id,
        "conversations": conversations,
        "info": {"reward": run.reward, "llm_name": model, "agent_arch": "react"},
    }


def write_array(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=2))
    return path


def write_lines(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def eef_expert_sciworld_record(record_id, task="task-1-boil", variation=3, score=100, model="NAT3I99p-ep6-6fm-ep6"):
    """A ScienceWorld record of the EEF set: score 0-100, the task's name and variation in ``info``."""
    return {
        "id": record_id,
        "conversations": [
            {"role": "user", "content": "You are an agent for science world. Your task is to boil water."},
            {"role": "assistant", "content": "Thought: the stove is in the kitchen.\nAction: teleport to kitchen"},
            {"role": "user", "content": "Observation: You teleport to the kitchen."},
            {"role": "assistant", "content": "Thought: now the water.\nAction: focus on water"},
        ],
        "info": {
            "reward": score,
            "task_name": task,
            "var_num": variation,
            "llm_name": model,
            "agent_arch": "think_act",
        },
    }


def write_eef_set(root, runs):
    """A directory shaped like the fetched EEF set: WebShop dumps of two models at the root (one model
    in two files, whose record ids repeat), ScienceWorld runs under ``test trajs/`` (a name with a
    space), and files that are not expert data (the manifest, the hub's cache, the card)."""
    write_array(root / "webshop_gpt4_0613.json", [eef_expert_record(r) for r in runs[:4]])
    write_array(root / "webshop_gpt4_0613_t07.json", [eef_expert_record(r) for r in runs[:2]])
    gpt35 = [eef_expert_record(r, model="gpt-3.5-turbo") for r in runs[4:6]]
    write_array(root / "webshop_gpt35_turbo.json", gpt35)
    sciworld = [eef_expert_sciworld_record(0, variation=3), eef_expert_sciworld_record(1, variation=4, score=35)]
    write_array(root / "test trajs" / "NAT3I99p-ep6-6fm-ep6_sciworld_0_-200.json", sciworld)
    (root / "MANIFEST.json").write_text('{"files": {}}')
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "webshop_gpt4_0613.json.metadata.json").write_text("{}")
    (root / "README.md").write_text("# webshop_expert_trajectories\n")
    return root
